"""Bodies of the admin API. Unknown fields are refused, as on the public API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterAdapter(_Strict):
    """Register a version already in the store: ``path`` is ``<name>/<version>``."""

    path: str = Field(max_length=200, examples=["demo/v2"])


class VersionChoice(_Strict):
    version: str = Field(max_length=64)


class OptionalVersion(_Strict):
    version: str | None = Field(default=None, max_length=64)


class CanaryChoice(_Strict):
    """Send ``weight`` (0 < weight < 1) of the adapter's requests to ``version``."""

    version: str = Field(max_length=64)
    weight: float = Field(gt=0, lt=1, allow_inf_nan=False, examples=[0.05])
