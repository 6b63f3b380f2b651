"""Intent classification of a support message: the contract behind ``/v1/classify``."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

DEMO_LABELS = ("password_reset", "billing_inquiry", "technical_support", "general_question")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@lru_cache(maxsize=64)
def intent_model(labels: tuple[str, ...]) -> type[BaseModel]:
    """A Pydantic model whose ``intent`` must be one of ``labels``.

    Field order matters to a left-to-right decoder: the label is chosen first, then
    the confidence in it.
    """
    if not labels or len(set(labels)) != len(labels):
        raise ValueError("labels must be non-empty and unique")
    return create_model(
        "IntentClassification",
        __base__=_Strict,
        __doc__="The intent of one support message.",
        intent=(Literal[labels], Field(description="The intent label")),  # type: ignore[valid-type]
        confidence=(float, Field(ge=0, le=1, description="How sure the model is, 0 to 1")),
        requires_human_agent=(bool, Field(description="True when a person should take over")),
    )


IntentClassification = intent_model(DEMO_LABELS)
