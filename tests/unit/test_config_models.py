from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import Settings
from gateway.models import MANIFEST, verify

ConfigFile = Callable[..., Path]


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConfigFile:
    """Names a settings file in ``GATEWAY_CONFIG``, holding ``text`` (None: left missing)."""

    def name(text: str | None, filename: str = "gateway.yaml") -> Path:
        path = tmp_path / filename
        if text is not None:
            path.write_text(text)
        monkeypatch.setenv("GATEWAY_CONFIG", str(path))
        return path

    return name


def test_env_overrides_file(config_file: ConfigFile, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file("port: 9001\nstructured_backend: guidance\nadapters:\n  demo: v3\n")
    monkeypatch.setenv("GATEWAY_PORT", "9002")
    settings = Settings()
    assert settings.port == 9002
    assert settings.structured_backend == "guidance"
    assert settings.adapters == {"demo": "v3"}


def test_toml_file(config_file: ConfigFile) -> None:
    config_file('quantization = "fp8"\nmax_loras = 4\n', "gateway.toml")
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


def test_keyword_arguments_beat_env_and_file(
    config_file: ConfigFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file("port: 9001\nmax_loras: 4\nseed: 7\n")
    monkeypatch.setenv("GATEWAY_PORT", "9002")
    monkeypatch.setenv("GATEWAY_MAX_LORAS", "2")
    settings = Settings(port=9003)
    assert (settings.port, settings.max_loras, settings.seed) == (9003, 2, 7)


def test_an_empty_file_leaves_the_defaults(config_file: ConfigFile) -> None:
    config_file("# nothing set yet\n")
    assert Settings().port == 8000


@pytest.mark.parametrize(
    ("text", "message"),
    [(None, "does not name a file"), ("- port\n- 9001\n", "top level must be a mapping")],
    ids=["missing", "not-a-mapping"],
)
def test_a_bad_settings_file_stops_the_start(
    config_file: ConfigFile, text: str | None, message: str
) -> None:
    config_file(text)
    with pytest.raises(ValueError, match=message):
        Settings()
