"""The output contracts the gateway serves by name: Pydantic models + JSON Schema files.

``NAMED_MODELS`` maps a schema name to a factory that builds the Pydantic model for a
label set; ``*.json`` files next to this module are plain JSON Schemas served by
their file name (without ``.json``).
"""

from schemas.intent import IntentClassification, intent_model

NAMED_MODELS = {"intent_classification": intent_model}

__all__ = ["NAMED_MODELS", "IntentClassification", "intent_model"]
