"""vLLM's exceptions as the gateway's, decided by type, so a client is blamed only for
what it caused:

- the request breaks one of vLLM's rules (``VLLMValidationError``) -> 400, as
  ``schema_unsupported`` when the request carries a constraint the backend refused;
- the adapter's files break vLLM's rules -> 400 ``adapter_invalid``;
- the engine has died -> 503 ``engine_unavailable``;
- anything else (out of memory, a vLLM bug, a ``ValueError`` from deep inside) -> 500
  ``engine_error``, with an id that is logged next to the traceback.

vLLM runs the engine in another process and reports a failed ``add_lora`` as a bare
``Exception`` holding only a message. So ``check_adapter_files`` runs vLLM's own check
of the adapter's configuration here first, where its ``ValueError`` still has its type:
a file problem is then told apart from an engine failure without reading messages.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway import errors

log = logging.getLogger(__name__)


def generation_failure(
    exc: Exception, *, request_id: str, constrained: bool, backend: str
) -> errors.GatewayError:
    """The error for ``exc``, raised while generating ``request_id``."""
    from vllm.exceptions import VLLMValidationError

    if isinstance(exc, VLLMValidationError):
        if constrained:
            return errors.SchemaUnsupported(
                f"the {backend} backend cannot enforce this schema: {exc}",
                param="response_format",
            )
        return errors.InvalidRequest(str(exc))
    return engine_failure(exc, f"the engine failed on request {request_id}")


def adapter_failure(exc: Exception, lora_name: str) -> errors.GatewayError:
    """The error for ``exc``, raised while the engine loaded adapter ``lora_name``."""
    from vllm.exceptions import VLLMClientError

    if isinstance(exc, VLLMClientError):  # e.g. LoRAAdapterNotFoundError, in-process only
        return errors.AdapterInvalid(f"the engine refused adapter {lora_name!r}: {exc}")
    return engine_failure(exc, f"the engine failed to load adapter {lora_name!r}")


def engine_failure(exc: Exception, what: str) -> errors.GatewayError:
    """503 if the engine is dead (the gateway is about to be restarted), else a 500 with
    a logged id."""
    from vllm.v1.engine.exceptions import EngineDeadError

    if isinstance(exc, EngineDeadError):
        return errors.EngineUnavailable("the inference engine has stopped")
    return errors.traced(errors.EngineFailed, what, log, exc)


def check_adapter_files(lora_name: str, path: str, lora_config: Any) -> None:
    """Raise ``AdapterInvalid`` where vLLM's loader would refuse the adapter's config
    (DoRA, bias, a rank over ``max_lora_rank``, a missing or malformed file...)."""
    from vllm.lora.peft_helper import PEFTHelper

    try:
        PEFTHelper.from_local_dir(path, max_position_embeddings=None).validate_legal(lora_config)
    except (OSError, ValueError, TypeError) as exc:  # what reading and checking it raise
        raise errors.AdapterInvalid(
            f"adapter {lora_name!r} cannot be served by this engine: {exc}"
        ) from exc
