from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import Settings
from gateway.models import MANIFEST, verify


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("port: 9001\nstructured_backend: guidance\nadapters:\n  demo: v3\n")
    monkeypatch.setenv("GATEWAY_CONFIG", str(config))
    monkeypatch.setenv("GATEWAY_PORT", "9002")
    settings = Settings()
    assert settings.port == 9002
    assert settings.structured_backend == "guidance"
    assert settings.adapters == {"demo": "v3"}


def test_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('quantization = "fp8"\nmax_loras = 4\n')
    monkeypatch.setenv("GATEWAY_CONFIG", str(config))
    assert (Settings().quantization, Settings().max_loras) == ("fp8", 4)


@pytest.mark.parametrize(
    "bad",
    [
        {"structured_backend": "regexes"},
        {"default_max_tokens": 500, "max_tokens_cap": 100},
        {"max_tokens_cap": 4096, "max_model_len": 2048},
        {"intent_labels": ["a", "a"]},
        {"max_loras": 8, "max_cpu_loras": 2},
        {"no_such_setting": 1},
    ],
)
def test_unsafe_or_unknown_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_verify_detects_tampering(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    digest = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    (tmp_path / MANIFEST).write_text(json.dumps({"files": {"config.json": digest}}))
    assert verify(tmp_path)
    (tmp_path / "config.json").write_text('{"x": 1}')
    assert not verify(tmp_path)
    assert not verify(tmp_path / "missing")


@pytest.mark.parametrize("value", ["", "none", "None"])
def test_quantization_can_be_switched_off(value: str) -> None:
    assert Settings(quantization=value).quantization is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"host": "0.0.0.0"}, "auth_mode=none"),
        ({"host": "10.1.2.3", "auth_mode": "none"}, "auth_mode=none"),
        ({"auth_mode": "tenants"}, "tenants_file"),
        ({"admin_key": "changeme"}, "admin_key"),
        ({"admin_key": "short"}, "admin_key"),
        ({"adapters": {"base": "v1"}}, "base model"),
    ],
)
def test_unsafe_settings_are_refused(overrides: dict, message: str) -> None:
    from pydantic import ValidationError

    from gateway.config import Settings

    with pytest.raises(ValidationError, match=message):
        Settings(**overrides)


def test_open_mode_may_be_forced_off_loopback() -> None:
    from gateway.config import Settings

    assert Settings(host="0.0.0.0", allow_open_auth=True).auth_mode == "none"
    assert Settings(host="::1").host == "::1"
