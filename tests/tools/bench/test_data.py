"""The datasets shipped under ``data/``: complete for what reads them, and the very
files the documented runs and the shipped adapters used."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from gateway.config import REPO_ROOT
from gateway_tools.bench import schemabench as sb
from gateway_tools.bench.data import BANKING77, JSONSCHEMABENCH, banking77_texts, shown

DOCUMENTED_RUNS = sorted((REPO_ROOT / "docs" / "benchmarks").glob("schemas*/results*.json"))


def test_exactly_the_schemas_of_the_shipped_samples_are_shipped() -> None:
    for subset in sb.SUBSETS:
        wanted = {name for size in sb.SAMPLE_SIZES for name, _ in sb.load(subset, size)}
        shipped = {path.name for path in (JSONSCHEMABENCH / subset).iterdir()}
        assert shipped == wanted, subset


@pytest.mark.parametrize("saved", DOCUMENTED_RUNS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_documented_schema_runs_draw_the_same_sample_again(saved: Path) -> None:
    run = json.loads(saved.read_text())
    assert run["per_subset"] in sb.SAMPLE_SIZES
    for rows in run["rows"].values():
        for subset in sb.SUBSETS:
            used = [row["file"] for row in rows if row["subset"] == subset]
            assert used == [name for name, _ in sb.load(subset, run["per_subset"])], subset


def test_documented_runs_are_found() -> None:
    assert {p.parent.name for p in DOCUMENTED_RUNS} == {"schemas", "schemas-240"}


def test_banking77_is_the_file_the_shipped_adapters_were_trained_on() -> None:
    digest = hashlib.sha256((BANKING77 / "train.csv").read_bytes()).hexdigest()
    for version in ("v1", "v2"):
        manifest = REPO_ROOT / "adapters" / "banking77" / version / "manifest.json"
        assert json.loads(manifest.read_text())["dataset"]["sha256"] == digest, version


def test_banking77_test_split_is_balanced_over_the_77_labels() -> None:
    labels = json.loads((BANKING77 / "categories.json").read_text())
    with (BANKING77 / "test.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(labels) == 77 and len(rows) == 3080
    assert {label: 40 for label in labels} == {
        label: sum(r["category"] == label for r in rows) for label in labels
    }
    texts = banking77_texts(77)
    assert len(set(texts)) == 77 and texts[0] == rows[0]["text"] and texts[1] == rows[40]["text"]


def test_saved_paths_are_repository_relative_inside_it() -> None:
    assert shown(BANKING77 / "test.csv") == "data/banking77/test.csv"
    assert shown(Path("/elsewhere/test.csv")) == "/elsewhere/test.csv"
