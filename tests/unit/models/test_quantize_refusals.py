"""Every mistake ``gateway model quantize`` can be told about is told before anything is
installed or computed, in one line naming the problem, and leaves the cache untouched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.models import ModelError
from gateway.models.quantize import QuantizeJob, prepare
from tests.unit.models.checkpoints import W4A16_CONFIG, source_model


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    path = tmp_path / "calibration.csv"
    path.write_text("text,category\nmy card is lost,lost_card\nwhere is my money,transfer\n")
    return path


def plan(tmp_path: Path, rows: Path, **options: Any) -> QuantizeJob:
    args: dict[str, Any] = {
        "scheme": "w4a16", "group_size": None, "calibration": rows, "samples": 8, "seed": 0,
        "out": None,
    }  # fmt: skip
    source = options.pop("source", tmp_path / "source")
    return prepare(source, tmp_path / "cache", **{**args, **options})


def refused(tmp_path: Path, rows: Path, **options: Any) -> str:
    with pytest.raises(ModelError) as caught:
        plan(tmp_path, rows, **options)
    assert not (tmp_path / "cache").exists()  # no target, no staging, no tool venv
    return str(caught.value)


def test_a_good_request_is_planned(tmp_path: Path, rows: Path) -> None:
    source = source_model(tmp_path / "source")
    job = plan(tmp_path, rows)
    assert job.out == tmp_path / "cache" / "source-w4a16-g32"
    assert (job.source.path, job.quantization.group_size) == (source, 32)
    assert sorted(job.calibration.texts) == ["my card is lost", "where is my money"]


def test_a_folder_that_is_not_a_model(tmp_path: Path, rows: Path) -> None:
    source = tmp_path / "source"
    assert refused(tmp_path, rows) == f"{source} is not a model folder: no such folder"
    source.mkdir()
    assert refused(tmp_path, rows) == f"{source} is not a model folder: no config.json"
    (source_model(source) / "model.safetensors").unlink()
    assert refused(tmp_path, rows) == f"{source} is not a model folder: no *.safetensors weights"


def test_an_already_quantized_model(tmp_path: Path, rows: Path) -> None:
    source = source_model(tmp_path / "source", quantization_config=W4A16_CONFIG)
    assert refused(tmp_path, rows) == (
        f"{source} is already quantized (w4a16-g32); quantize its unquantized source instead"
    )


def test_a_layout_quantize_does_not_know(tmp_path: Path, rows: Path) -> None:
    source_model(tmp_path / "source", architectures=["Qwen3MoeForCausalLM"])
    assert "knows the LlamaForCausalLM layout; this model is Qwen3MoeForCausalLM" in refused(
        tmp_path, rows
    )


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"scheme": "w3a16"}, "unsupported scheme 'w3a16'; choose w4a16 or w8a8"),
        ({"scheme": "w8a8", "group_size": 32}, "w8a8 quantizes per output channel"),
    ],
)
def test_schemes_and_their_options(tmp_path: Path, rows: Path, options: dict, problem: str) -> None:
    source_model(tmp_path / "source")
    assert problem in refused(tmp_path, rows, **options)


@pytest.mark.parametrize(
    ("group_size", "config", "problem"),
    [
        (128, {}, "group size 128 does not divide q_proj's input size 64"),
        (64, {"intermediate_size": 96}, "group size 64 does not divide down_proj's input size 96"),
        (33, {}, "group size 33 must be an even number"),
        (0, {}, "group size 0 must be an even number"),
        (16, {"hidden_size": 48, "num_attention_heads": 3}, "q_proj is 48x48"),
    ],
    ids=["too-big", "one-layer", "odd", "zero", "kernel-multiple"],
)  # fmt: skip
def test_a_group_size_that_does_not_fit(
    tmp_path: Path, rows: Path, group_size: int, config: dict, problem: str
) -> None:
    source_model(tmp_path / "source", **config)
    assert problem in refused(tmp_path, rows, group_size=group_size)


def test_smollm2_takes_group_size_32_and_64_but_not_128(tmp_path: Path, rows: Path) -> None:
    smollm2 = {"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9,
               "num_key_value_heads": 3, "head_dim": 64}  # fmt: skip
    source_model(tmp_path / "source", **smollm2)
    assert plan(tmp_path, rows, group_size=32).quantization.variant == "w4a16-g32"
    assert plan(tmp_path, rows, group_size=64).quantization.variant == "w4a16-g64"
    assert "does not divide q_proj's input size 576" in refused(tmp_path, rows, group_size=128)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("rows.csv", None, "does not exist"),
        ("rows.csv", "text,category\n", "has no non-empty 'text' values"),
        ("rows.csv", "text,category\n  ,a\n", "has no non-empty 'text' values"),
        ("rows.csv", "question,category\nhi,a\n", "has no 'text' column"),
        ("rows.jsonl", '{"question": "hi"}\n', "has no 'text' column"),
        ("rows.jsonl", '{"text": "hi"\n', "cannot be read"),
        ("rows.txt", "hi\n", "must be .csv or .jsonl"),
    ],
    ids=["missing", "empty", "blank", "no-text", "jsonl-no-text", "bad-json", "suffix"],
)
def test_a_calibration_file_without_texts(
    tmp_path: Path, name: str, content: str | None, problem: str
) -> None:
    source_model(tmp_path / "source")
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    assert refused(tmp_path, path).startswith(f"calibration file {path} {problem}")


def test_samples_must_be_positive(tmp_path: Path, rows: Path) -> None:
    source_model(tmp_path / "source")
    assert refused(tmp_path, rows, samples=0) == "--samples must be at least 1, got 0"


def test_an_existing_target_is_never_overwritten(tmp_path: Path, rows: Path) -> None:
    source_model(tmp_path / "source")
    taken = tmp_path / "taken"
    taken.mkdir()
    assert refused(tmp_path, rows, out=taken) == (
        f"{taken} already exists; remove it or choose another --out"
    )


def test_jsonl_calibration_is_read_and_drawn_with_the_seed(tmp_path: Path) -> None:
    source_model(tmp_path / "source")
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"text": f"question {i}"}) + "\n" for i in range(50)))
    first = plan(tmp_path, path, samples=5, seed=1).calibration
    assert first.texts == plan(tmp_path, path, samples=5, seed=1).calibration.texts
    assert first.texts != plan(tmp_path, path, samples=5, seed=2).calibration.texts
    assert (len(first.texts), first.rows) == (5, 50)
    assert len(plan(tmp_path, path, samples=500).calibration.texts) == 50


def test_the_command_line_says_it_in_one_line(
    tmp_path: Path,
    rows: Path,
    gateway_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def no_tool(*args: object) -> None:
        raise AssertionError("the tool venv was set up despite the mistake")

    monkeypatch.setattr("gateway.models.toolenv.tool_env", no_tool)
    source = source_model(tmp_path / "source", quantization_config=W4A16_CONFIG)
    argv = ["model", "quantize", "--scheme", "w4a16", "--source", str(source),
            "--calibration", str(rows)]  # fmt: skip
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"gateway: error: {source} is already quantized (w4a16-g32); quantize its "
        "unquantized source instead\n"
    )
    with pytest.raises(SystemExit) as exit_:
        main(["model", "quantize", "--scheme", "w3a16"])
    assert exit_.value.code == 2
    assert not (tmp_path / "cache").exists()


def test_w8a8_reads_no_calibration_file(tmp_path: Path) -> None:
    """Round-to-nearest needs no data, so the default variant can be made where only the
    package is installed (a container image without the repository's data/)."""
    job = prepare(
        source_model(tmp_path / "src"), tmp_path / "cache", scheme="w8a8", group_size=None,
        calibration=tmp_path / "absent.csv", samples=16, seed=3, out=tmp_path / "out",
    )  # fmt: skip
    assert job.calibration is None and job.seed == 3
