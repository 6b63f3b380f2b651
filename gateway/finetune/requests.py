"""A job request in OpenAI's shape, and what it becomes: the training run's options.

OpenAI's fields map onto the recipe (``n_epochs`` -> epochs, ``batch_size``,
``learning_rate_multiplier`` x the recipe's learning rate); what OpenAI has no field for
sits in one extension object, ``gateway`` (``extra_body={"gateway": {...}}`` in the SDK):
the adapter that gets the new version, the label set, the answer format, and
``promote_if``, the evaluation a new version must pass to become the adapter's current one.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from gateway import errors
from gateway.common.names import NAME_PATTERN, excerpt
from gateway.common.usage import describe
from gateway.tenancy import Tenant
from gateway.training.config import TrainConfig

Label = Annotated[str, Field(min_length=1, max_length=200)]
MAX_SEED = 2**31 - 1


MIN_LR_MULTIPLIER = 0.001  # below it nothing trains; 1e-320 (a denormal) once made a job
RANGES = {"n_epochs": (1, 50), "batch_size": (1, 256),
          "learning_rate_multiplier": (MIN_LR_MULTIPLIER, 10)}  # fmt: skip


class Hyperparameters(BaseModel):
    """Numbers as JSON numbers, in range, or ``"auto"``: ``"3"`` is refused, not read as 3
    (OpenAI's SDK sends numbers; a string is a client's mistake worth naming)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    n_epochs: int | Literal["auto"] = "auto"
    batch_size: int | Literal["auto"] = "auto"
    learning_rate_multiplier: float | Literal["auto"] = "auto"

    @field_validator("n_epochs", "batch_size", "learning_rate_multiplier", mode="before")
    @classmethod
    def _number_or_auto(cls, value: Any, info: ValidationInfo) -> Any:
        """One check per field, so the refusal names the field (not a union branch)."""
        if value == "auto" and isinstance(value, str):
            return value
        whole = info.field_name != "learning_rate_multiplier"
        kinds = (int,) if whole else (int, float)
        low, high = RANGES[info.field_name]
        if type(value) not in kinds or not low <= value <= high:  # bools, strings, nan, inf
            kind = "an integer" if whole else "a number"
            raise ValueError(f"must be {kind} from {low} to {high}, or 'auto'")
        return value


class Supervised(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: Hyperparameters | None = None


class Method(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["supervised"]
    supervised: Supervised | None = None


class PromoteIf(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    min_accuracy: float = Field(ge=0, le=1, allow_inf_nan=False)


class GatewayOptions(BaseModel):
    """The extension: everything here is optional."""

    model_config = ConfigDict(extra="forbid")

    adapter: str | None = Field(default=None, pattern=NAME_PATTERN)
    labels: list[Label] | None = Field(default=None, min_length=2, max_length=1000)
    answer: Literal["decision_token", "json"] = "decision_token"
    schema_name: str = "intent_classification"  # checked by ``TrainConfig``
    promote_if: PromoteIf | None = None


class JobRequest(BaseModel):
    """``POST /v1/fine_tuning/jobs``; unknown fields are refused, as on every route, and
    values are taken only in their JSON type (``strict``: no ``"7"`` for a seed)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1, max_length=200)
    training_file: str = Field(min_length=1, max_length=64)
    validation_file: str | None = Field(default=None, min_length=1, max_length=64)
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] = (
        Field(default_factory=dict, max_length=16)
    )
    gateway: GatewayOptions = Field(default_factory=GatewayOptions)

    def chosen_hyperparameters(self) -> Hyperparameters:
        """``method.supervised.hyperparameters`` (OpenAI's current place) or the top-level
        ones (its older place); both at once is ambiguous and refused."""
        nested = self.method.supervised if self.method and self.method.supervised else None
        if nested and nested.hyperparameters and self.hyperparameters:
            raise errors.InvalidRequest(
                "give hyperparameters or method.supervised.hyperparameters, not both",
                param="hyperparameters",
            )
        return (
            (nested.hyperparameters if nested else None)
            or self.hyperparameters
            or (Hyperparameters())
        )


def target_adapter(request: JobRequest, tenant: Tenant | None, base_name: str) -> str:
    """The adapter that gets the new version: ``gateway.adapter``, else ``model`` when it
    names an adapter, else the tenant's default adapter. A tenant must be allowed that
    name explicitly: ``"*"`` lets a tenant use every adapter, not add versions to them."""
    named = request.model if request.model != base_name else None
    if named is not None and request.gateway.adapter not in (None, named):
        raise errors.InvalidRequest(
            "model names one adapter and gateway.adapter another", param="gateway.adapter"
        )
    name = request.gateway.adapter or named or (tenant.default_adapter if tenant else None)
    if name is None:
        raise errors.InvalidRequest(
            "which adapter gets the new version? Set gateway.adapter, or model to one of "
            "your adapters (training always starts from the base model)",
            param="model",
        )
    if name == base_name:
        raise errors.InvalidRequest(f"{name!r} is the base model's name", param="gateway.adapter")
    if tenant is not None and name not in tenant.allowed_adapters:
        raise errors.AdapterForbidden(
            f"this key may not add versions to the adapter {excerpt(name)}", param="model"
        )
    return name


def check_ownership(
    request: JobRequest, owner: str | None, adapter: str, found: tuple[bool, str | None]
) -> None:
    """A tenant fine-tunes into its own adapters (or a new name, which becomes its own)
    and the operator's (private versions only), never another tenant's; and only its
    own adapter's current version may change by ``promote_if``: a shared adapter serves
    other tenants too. ``owner``: the tenant's jobs' owner (None without keys: the
    operator); ``found``: (the adapter exists, its recorded owner; None: the operator's)."""
    exists, recorded = found
    if owner is None:  # no keys: the caller is the operator
        return
    if exists and recorded not in (None, owner):
        raise errors.AdapterForbidden(
            f"the adapter {excerpt(adapter)} belongs to another tenant", param="model"
        )
    if request.gateway.promote_if is not None and exists and recorded != owner:
        raise errors.AdapterForbidden(
            f"promote_if: {excerpt(adapter)} is a shared adapter (the operator's) and serves "
            "other tenants; only the operator promotes its versions. Leave promote_if out "
            "to train a version only your key can call",
            param="gateway.promote_if",
        )


def version_name(job_id: str, suffix: str | None) -> str:
    """``ft-<suffix>-<12 hex of the job id>``: unique per job, a valid version name."""
    tail = job_id.rsplit("-", 1)[-1][:12]
    return f"ft-{suffix}-{tail}" if suffix else f"ft-{tail}"


def train_options(
    request: JobRequest, adapter: str, version: str, seed: int, fixed: dict[str, Any]
) -> dict[str, Any]:
    """The run's ``TrainConfig`` as JSON, validated now so a bad combination is a 400
    rather than a failed job. ``fixed``: what the server decides (paths, store, budget)."""
    hp = request.chosen_hyperparameters()
    lr = TrainConfig.model_fields["learning_rate"].default
    options = {
        "name": adapter,
        "version": version,
        "labels": request.gateway.labels or [],
        "answer": request.gateway.answer,
        "schema_name": request.gateway.schema_name,
        "epochs": hp.n_epochs,
        "batch_size": hp.batch_size,
        "learning_rate": lr * (1 if hp.learning_rate_multiplier == "auto" else
                               hp.learning_rate_multiplier),
        "seed": seed,
        "evaluate": False,
        **fixed,
    }  # fmt: skip
    try:
        return TrainConfig(**options).model_dump(mode="json")
    except ValidationError as exc:
        raise errors.InvalidRequest(f"training options: {describe(exc)}") from exc
