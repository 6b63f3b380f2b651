"""A user's mistake ends any ``gateway`` command with one line naming it and exit status 2;
the traceback is for ``--debug``, and for real bugs. Nothing here loads a model, trains or
starts the engine: each guard below fails the test if the command gets that far."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.common.usage import UsageError
from gateway.config import REPO_ROOT


def _too_far(*args: object, **kwargs: object) -> None:
    raise AssertionError("the command went past the mistake (model, training, engine or server)")


@pytest.fixture(autouse=True)
def guarded(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    for target in (
        "gateway.models.identity.verify",  # the default base model: checked, then loaded
        "gateway.models.identity.fingerprint_dir",  # a configured one
        "gateway.training.recipe.train",
        "gateway.evaluation.evaluate_adapter",
        "gateway.server.create_app",
        "uvicorn.run",
        "os.execve",  # the CPU runtime's re-exec of ``gateway serve``
    ):
        monkeypatch.setattr(target, _too_far)


def fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line ``argv`` prints on stderr, after checking the exit status."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("gateway: error: ") and err.count("\n") == 1, err
    return err.removeprefix("gateway: error: ").strip()


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    data = tmp_path / "rows.csv"
    data.write_text("text,category\nmy card is lost,lost_card\nhello,greeting\n")
    return data


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        yield taken.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_missing_data_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    nope = tmp_path / "nope.csv"
    assert fails(["train", "name=x", f"data={nope}"], capsys) == f"data file {nope} does not exist"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("text,category\nok,a\nno label here\n", ":3: needs a non-empty 'text' and 'intent'"),
        ('{"text": "ok", "intent": "a"}\n\n{"text": "x"\n', ":3: not JSON"),
        ('{"text": "ok", "intent": "a"}\n[1, 2]\n', ":2: not a JSON object"),
        ('{"messages": "hi"}\n', ":1: 'messages' must be a list"),
        ('{"prompt": "hi", "completion": 3}\n', ":1: 'prompt' and 'completion' must be strings"),
        ("", "holds no examples"),
    ],
)
def test_a_bad_row_is_named_by_file_and_line(
    content: str, problem: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / ("rows.csv" if content.startswith("text,") else "rows.jsonl")
    data.write_text(content)
    assert problem in fails(["train", "name=x", f"data={data}"], capsys)


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("epoch=3", "unknown key 'epoch' (did you mean 'epochs'?)"),
        ("epochs=many", "epochs: Input should be a valid integer"),
        ("epochs", "override 'epochs' is not key=value"),
        ("name=../up", "name: String should match pattern"),
    ],
)
def test_a_bad_override(
    override: str, problem: str, capsys: pytest.CaptureFixture[str], rows: Path
) -> None:
    assert problem in fails(["train", "name=x", f"data={rows}", override], capsys)


def test_missing_config_and_labels_files(capsys: pytest.CaptureFixture[str], rows: Path) -> None:
    nope = rows.parent / "nope.yaml"
    assert fails(["train", "--config", str(nope)], capsys) == f"config file {nope} does not exist"
    argv = ["train", "name=x", f"data={rows}", f"labels_file={nope}"]
    assert fails(argv, capsys) == f"labels_file {nope} does not exist"


def test_eval_of_an_adapter_never_trained(capsys: pytest.CaptureFixture[str], rows: Path) -> None:
    argv = ["eval", "name=x", f"data={rows}", f"out_root={rows.parent}"]
    assert "adapter x/v1: manifest" in fails(argv, capsys)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"GATEWAY_PORT": "abc"}, "settings: port: Input should be a valid integer"),
        ({"GATEWAY_CONFIG": "/no/such.yaml"}, "GATEWAY_CONFIG=/no/such.yaml does not name a file"),
        ({"GATEWAY_ADAPTERS": "{not json"}, 'error parsing value for field "adapters"'),
        ({"GATEWAY_AUTH_MODE": "tenants"}, "auth_mode=tenants needs tenants_file"),
    ],
)
def test_bad_settings(
    env: dict[str, str],
    problem: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert problem in fails(["schemas", "export", "--out", str(tmp_path)], capsys)


def test_a_malformed_settings_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("port: [\n")
    monkeypatch.setenv("GATEWAY_CONFIG", str(config))
    assert fails(["schemas", "export", "--out", str(tmp_path)], capsys).startswith(
        f"settings file {config}: while parsing"
    )


def test_a_missing_model_dir(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GATEWAY_MODEL_DIR", str(tmp_path / "nope"))
    assert fails(["model", "pull"], capsys) == f"model_dir {tmp_path / 'nope'} does not exist"


def test_serve_on_an_occupied_port(capsys: pytest.CaptureFixture[str], held_port: int) -> None:
    problem = fails(["serve", "--port", str(held_port)], capsys)
    assert problem.startswith(f"cannot listen on 127.0.0.1:{held_port}: Address already in use")
    assert f", held by pid {os.getpid()} (" in problem  # this test's process holds it


def test_serve_without_memory_for_the_engine(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.engine.cpu_runtime import is_cpu_build

    if not is_cpu_build():
        pytest.skip("the memory check is the CPU engine's")
    monkeypatch.setenv("GATEWAY_KV_CACHE_GIB", "100000")
    assert fails(["serve"], capsys).startswith(
        "not enough memory for the engine: it reserves 100000.0 GiB (kv_cache_gib 100000)"
    )


@pytest.mark.parametrize(
    ("argv", "env", "problem"),
    [
        ([], {"GATEWAY_MODEL_DIR": str(REPO_ROOT)}, "is not a Hugging Face model directory"),
        ([], {"GATEWAY_AUTH_MODE": "tenants", "GATEWAY_TENANTS_FILE": "/no/tenants.yaml"},
         "tenants_file /no/tenants.yaml does not exist"),
        (["--adapter", "demo"], {}, "--adapter expects NAME=VERSION"),
        (["--adapter", "demo=v999"], {}, "adapter demo=v999 is not in"),
        (["--port", "0"], {}, "settings: port: Input should be greater than or equal to 1"),
        ([], {"GATEWAY_QUANTIZATION": "fp8"},
         "quantization 'fp8' is an online method, but base_variant w8a8 is already quantized"),
    ],
)  # fmt: skip
def test_serve_refuses_before_the_engine_starts(
    argv: list[str],
    env: dict[str, str],
    problem: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    free_port: int,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert problem in fails(["serve", "--port", str(free_port), *argv], capsys)


@pytest.mark.parametrize(
    "argv",
    [["bench", "perf", "--rounds", "2"], ["console", "screenshots"], ["bench"]],
)
def test_the_tools_verbs_point_to_gateway_tools(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The benchmarks and screenshots left the server's package: the old verbs say where."""
    verb = " ".join(argv)
    assert fails(argv, capsys).startswith(
        f"`gateway {verb}` moved to the tools package: run `gateway-tools {verb}`"
    )


def test_keys_hash_without_a_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert fails(["keys", "hash"], capsys) == "keys hash: pass the key on standard input"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        main(["--debug", "train", "name=x", f"data={tmp_path / 'nope.csv'}"])


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> str:
        raise RuntimeError("a bug, not a mistake")

    monkeypatch.setattr("gateway.tenancy.generate_key", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["keys", "new"])


def test_the_installed_command_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    """End to end through ``python -m gateway.cli``, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "train", "name=x", "data=nope.csv"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stderr) == (
        2,
        "gateway: error: data file nope.csv does not exist\n",
    )
