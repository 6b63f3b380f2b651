"""One exception tree: every failure the gateway reports carries its HTTP status,
a machine-readable code, whether a retry may help, and a hint for the caller.

The HTTP layer turns these into OpenAI-shaped error bodies; nothing else does.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, ClassVar, TypeVar


class GatewayError(Exception):
    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    error_type: ClassVar[str] = "server_error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        hint: str | None = None,
        error_id: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.hint = hint
        self.error_id = error_id  # set on failures logged for an operator (see ``traced``)

    def to_body(self) -> dict[str, Any]:
        """The OpenAI error shape, plus our ``retryable`` and ``hint``."""
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "param": self.param,
            "code": self.code,
            "retryable": self.retryable,
        }
        if self.hint:
            error["hint"] = self.hint
        if self.error_id:
            error["id"] = self.error_id
        return {"error": error}


class InvalidRequest(GatewayError):
    status_code = 400
    code = "invalid_request"
    error_type = "invalid_request_error"


class BodyTooLarge(InvalidRequest):
    status_code = 413
    code = "body_too_large"


class MaxTokensExceeded(InvalidRequest):
    code = "max_tokens_exceeded"


class PromptTooLong(InvalidRequest):
    code = "context_length_exceeded"


class SchemaInvalid(InvalidRequest):
    code = "schema_invalid"


class SchemaTooLarge(InvalidRequest):
    code = "schema_too_large"


class SchemaUnsupported(InvalidRequest):
    code = "schema_unsupported"


class SchemaCompileFailed(SchemaUnsupported):
    """The engine could not build the schema's grammar: the backend failed on it or ran
    past vLLM's compile timeout. Not an ``OutputError``: retrying would only compile it
    again (a timed-out compile goes on in its thread), so the schema is remembered and
    refused at once next time."""

    code = "schema_compile_failed"


class SchemaNotFound(InvalidRequest):
    status_code = 404
    code = "schema_not_found"


class AdapterInvalid(InvalidRequest):
    """The adapter's files fail validation: ours (the store) or the engine's."""

    code = "adapter_invalid"


class AdapterHasNoLabels(InvalidRequest):
    """Classify on an adapter whose manifest records no label set (a chat-only adapter)."""

    code = "adapter_has_no_labels"


class AdapterNotFound(InvalidRequest):
    status_code = 404
    code = "adapter_not_found"
    error_type = "not_found_error"


class OutputError(GatewayError):
    """The engine produced something that is not a valid answer for the request."""

    status_code = 502
    error_type = "output_error"
    retryable = True

    def __init__(self, message: str, *, raw_output: str = "", **kwargs: Any):
        super().__init__(message, **kwargs)
        self.raw_output = raw_output


class OutputTruncated(OutputError):
    code = "output_truncated"


class OutputInvalid(OutputError):
    code = "output_invalid"


class EngineUnavailable(GatewayError):
    status_code = 503
    code = "engine_unavailable"
    retryable = True


class EngineFailed(GatewayError):
    """The engine failed for a reason the client did not cause (see the logged id)."""

    status_code = 500
    code = "engine_error"
    retryable = True


class Unauthorized(GatewayError):
    """No key, or a key that is not a tenant's (or not the admin's, on admin routes)."""

    status_code = 401
    code = "invalid_api_key"
    error_type = "authentication_error"


class AdapterForbidden(GatewayError):
    """The tenant may not use this adapter. Worded the same whether or not it exists."""

    status_code = 403
    code = "adapter_forbidden"
    error_type = "permission_error"


class RateLimited(GatewayError):
    """Over a request-rate, token-rate or concurrency limit; ``Retry-After`` says when."""

    status_code = 429
    code = "rate_limited"
    error_type = "rate_limit_error"
    retryable = True

    def __init__(
        self, message: str, *, retry_after: float = 1.0, reason: str = "limit", **kwargs: Any
    ):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.reason = reason  # concurrency, requests or tokens: a metrics label


class Overloaded(GatewayError):
    """The gateway-wide queue is full: shed load now rather than queue without bound."""

    status_code = 503
    code = "overloaded"
    retryable = True

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class SchemaBudgetExceeded(RateLimited):
    """Over the tenant's budget of new schemas per minute: each new schema costs a grammar
    compile in the engine, shared work that one tenant must not spend for everyone."""

    code = "schema_budget_exceeded"


class DeadlineExceeded(GatewayError):
    """The request ran past its deadline (queueing and engine work); the engine work was
    stopped, so nothing still runs for it."""

    status_code = 504
    code = "deadline_exceeded"
    retryable = True


class ClientDisconnected(GatewayError):
    """The client left before the answer; nobody reads this, it ends the handler."""

    status_code = 499
    code = "client_disconnected"


class Conflict(GatewayError):
    """The operation clashes with the current state (e.g. deleting a served version)."""

    status_code = 409
    code = "conflict"
    error_type = "invalid_request_error"


class AdapterVersionExists(Conflict):
    """A new version's name is taken: the store never replaces a version."""

    code = "adapter_version_exists"


class AdapterUnavailable(GatewayError):
    """Every engine slot is busy with in-flight requests of other adapters."""

    status_code = 503
    code = "adapter_unavailable"
    retryable = True


class RateLimiterUnavailable(GatewayError):
    """The shared rate-limit store (Redis) cannot be reached and the operator chose to
    fail closed: admitting without counting could let N replicas exceed a tenant's limit."""

    status_code = 503
    code = "rate_limiter_unavailable"
    retryable = True


class StateUnavailable(GatewayError):
    """The shared state store (Postgres) cannot be reached: reads are served from the
    replica's cache, but a change cannot be made durable, so it is refused."""

    status_code = 503
    code = "state_unavailable"
    retryable = True


class AdapterIntegrityFailed(GatewayError):
    """An adapter object's bytes do not match the SHA-256 its record holds: it is never
    loaded. A storage fault (or tampering), not the caller's."""

    status_code = 502
    code = "adapter_integrity_failed"


class FineTuningDisabled(GatewayError):
    """The operator has not set ``finetune_dir``: no files, no jobs."""

    status_code = 404
    code = "fine_tuning_disabled"
    error_type = "not_found_error"


class FileNotFound(InvalidRequest):
    """No such file for this tenant (another tenant's file is not found either)."""

    status_code = 404
    code = "file_not_found"
    error_type = "not_found_error"


class JobNotFound(InvalidRequest):
    """No such fine-tuning job for this tenant (another tenant's job is not found either)."""

    status_code = 404
    code = "fine_tuning_job_not_found"
    error_type = "not_found_error"


class FileTooLarge(BodyTooLarge):
    code = "file_too_large"


class InvalidFile(InvalidRequest):
    """An upload or a job's file that training could not read (format, encoding, rows)."""

    code = "invalid_file"


class JobNotCancellable(Conflict):
    """The job has already ended (succeeded, failed or cancelled)."""

    code = "job_not_cancellable"


class JobLimitReached(RateLimited):
    """The tenant has ``finetune_max_active_jobs`` jobs queued or running."""

    code = "fine_tuning_job_limit"


class QuotaExceeded(RateLimited):
    """The tenant's fine-tuning storage is full (``finetune_max_files_per_tenant``,
    ``finetune_max_bytes_per_tenant``): deleting files frees it, waiting does not."""

    code = "quota_exceeded"
    retryable = False


class UploadInProgress(RateLimited):
    """The tenant has an upload being read; one at a time per tenant."""

    code = "upload_in_progress"


class TrainingTokensExceeded(RateLimited):
    """The tenant's training tokens of the last 24 hours reached ``finetune_tokens_per_day``."""

    code = "training_token_budget_exceeded"


Failure = TypeVar("Failure", bound=GatewayError)


def traced(
    kind: type[Failure], what: str, logger: logging.Logger, cause: BaseException | None = None
) -> Failure:
    """A failure nobody foresaw, as an error an operator can find: a fresh id is logged
    with ``cause``'s traceback and sent to the client in the message and ``error.id``."""
    error_id = f"err-{uuid.uuid4().hex[:16]}"
    logger.error("%s [error id %s]", what, error_id, exc_info=cause)
    message = f"{what}; the gateway log has the details under error id {error_id}"
    return kind(message, error_id=error_id)
