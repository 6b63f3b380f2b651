"""The heavy part of ``gateway model quantize``, with the worker stood in for by a runner
that writes what a worker writes: a failure of any kind leaves nothing in the cache; a
success is checked, recorded in a manifest, and a later change to it is named."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from gateway.models import ModelError, resolve_model, sha256_file
from gateway.models.quantize import WORKER, QuantizeJob, prepare, quantize
from gateway.models.toolenv import ToolEnv
from tests.unit.models.checkpoints import fake_worker, source_model, w4a16_checkpoint

TOOL = ToolEnv(Path("/tool/bin/python"), {"llmcompressor": "0.14.0.1", "torch": "2.13.0"})


@pytest.fixture
def job(tmp_path: Path) -> QuantizeJob:
    rows = tmp_path / "rows.csv"
    rows.write_text("text\nmy card is lost\nwhere is my money\nhow do I top up\n")
    return prepare(
        source_model(tmp_path / "source"), tmp_path / "cache", scheme="w4a16", group_size=None,
        calibration=rows, samples=2, seed=7, out=None,
    )  # fmt: skip


def leftovers(job: QuantizeJob) -> list[str]:
    return sorted(p.name for p in job.out.parent.iterdir())


def test_a_crashed_worker_leaves_nothing(job: QuantizeJob) -> None:
    run, calls = fake_worker(w4a16_checkpoint, status=1)
    with pytest.raises(ModelError, match="the quantizer exited with status 1"):
        quantize(job, TOOL, run)
    assert calls[0][:2] == [str(TOOL.python), str(WORKER)]
    assert leftovers(job) == []


def test_ctrl_c_leaves_nothing(job: QuantizeJob) -> None:
    def interrupted(command: Sequence[str]) -> int:
        w4a16_checkpoint(Path(json.loads(Path(command[-1]).read_text())["out"]))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        quantize(job, TOOL, interrupted)
    assert leftovers(job) == []


@pytest.mark.parametrize(
    ("write", "problem"),
    [
        (lambda out: source_model(out), "config.json states None"),
        (lambda out: w4a16_checkpoint(out, drop="model.layers.0.mlp.down_proj.weight_packed"),
         "tensor model.layers.0.mlp.down_proj.weight_packed is missing"),
        (lambda out: (w4a16_checkpoint(out), (out / "tokenizer.json").unlink()),
         "the tokenizer is missing"),
        (lambda out: (w4a16_checkpoint(out), (out / "model.safetensors").write_bytes(b"\x10")),
         "model.safetensors is not a readable safetensors file"),
    ],
    ids=["unquantized", "missing-tensor", "no-tokenizer", "torn-weights"],
)  # fmt: skip
def test_a_wrong_checkpoint_is_refused_and_removed(
    job: QuantizeJob, write: Callable[[Path], object], problem: str
) -> None:
    run, _ = fake_worker(write)
    with pytest.raises(ModelError, match="the quantized checkpoint is wrong: " + problem):
        quantize(job, TOOL, run)
    assert leftovers(job) == []


def test_a_checkpoint_is_recorded_and_its_identity_is_the_family(
    job: QuantizeJob, tmp_path: Path
) -> None:
    run, calls = fake_worker(w4a16_checkpoint)
    info = quantize(job, TOOL, run)
    assert leftovers(job) == ["source-w4a16-g32"]
    assert not Path(calls[0][-1]).exists()  # the worker's job file went with the staging
    manifest = json.loads((job.out / "provenance.json").read_text())
    assert manifest["kind"] == "quantized"
    assert manifest["fingerprint"] == job.source.fingerprint == info.fingerprint
    assert manifest["scheme"] == "w4a16"
    assert manifest["quantization"] == {
        "method": "compressed-tensors", "format": "pack-quantized", "weight_bits": 4,
        "activation_bits": None, "group_size": 32,
    }  # fmt: skip
    assert manifest["source"]["path"] == str(job.source.path.resolve())
    assert manifest["source"]["files"] == {
        name: sha256_file(job.source.path / name) for name in ("config.json", "model.safetensors")
    }
    calibration = manifest["calibration"]
    assert calibration["sha256"] == sha256_file(tmp_path / "rows.csv")
    assert (calibration["rows"], calibration["samples"], manifest["seed"]) == (3, 2, 7)
    assert manifest["tools"] == TOOL.versions
    assert set(manifest["files"]) == {"config.json", "model.safetensors", "tokenizer.json",
                                      "tokenizer_config.json"}  # fmt: skip
    assert resolve_model(job.out, tmp_path / "cache") == info
    assert (info.variant, info.source, info.quantization.group_size) == (  # type: ignore[union-attr]
        "w4a16-g32",
        job.source.path.resolve(),
        32,
    )
    assert info.unquantized().path == job.source.path.resolve()


def test_a_changed_file_is_named(job: QuantizeJob, tmp_path: Path) -> None:
    run, _ = fake_worker(w4a16_checkpoint)
    quantize(job, TOOL, run)
    with (job.out / "model.safetensors").open("r+b") as weights:
        weights.seek(-1, 2)
        weights.write(b"\x01")
    with pytest.raises(ModelError, match=r"model\.safetensors does not match its hash"):
        resolve_model(job.out, tmp_path / "cache")
    (job.out / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=f"{job.out} is a corrupt quantized checkpoint"):
        resolve_model(job.out, tmp_path / "cache")


def test_without_its_source_a_checkpoint_serves_but_does_not_train(
    job: QuantizeJob, tmp_path: Path
) -> None:
    run, _ = fake_worker(w4a16_checkpoint)
    quantize(job, TOOL, run)
    shutil.rmtree(job.source.path)
    info = resolve_model(job.out, tmp_path / "cache")
    assert (info.source, info.fingerprint) == (None, job.source.fingerprint)
    with pytest.raises(ModelError, match="unquantized source is not on this machine"):
        info.unquantized()
