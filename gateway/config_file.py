"""The optional settings file named by ``GATEWAY_CONFIG``, read by pydantic-settings'
own YAML and TOML sources; ``gateway.config`` puts it below keyword arguments and env."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)


class _YamlFileSource(YamlConfigSettingsSource):
    """pydantic-settings' YAML source, refusing a top level that is not a mapping: the
    library would fail on it with a bare ``dict.update`` error naming neither file nor key."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        data = super()._read_file(file_path) or {}  # older releases: None when empty
        if not isinstance(data, dict):
            raise ValueError(f"{file_path}: the top level must be a mapping")
        return data


def config_file_source(settings_cls: type[BaseSettings]) -> PydanticBaseSettingsSource | None:
    """The file named by ``GATEWAY_CONFIG`` (``.toml`` is TOML, anything else YAML). A named
    file that is missing is an error: pydantic-settings would silently skip it, and the
    gateway would start on defaults the operator never chose."""
    path = os.environ.get("GATEWAY_CONFIG")
    if not path:
        return None
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"GATEWAY_CONFIG={path} does not name a file")
    if file.suffix == ".toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=file)
    return _YamlFileSource(settings_cls, yaml_file=file)
