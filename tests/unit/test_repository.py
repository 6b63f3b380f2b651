"""The repository carries what it reads: no file may point outside it at a team workspace.

A fresh clone has nothing next to it, so a path into a ``shared`` folder beside the
checkout, in code, configs, docs or saved results, works only where it was written.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from gateway.training.config import load_config

ROOT = Path(__file__).resolve().parents[2]
# Written as patterns so this file does not match itself; the last is a pathlib join.
OUTSIDE_PATH = re.compile(r"\.\./shared|shared[/\\]data|[\"']shared[\"']\s*/\s*[\"']data")
WORKSPACE_FILE = "/".join(("..", "shared", "data", "banking77", "train.csv"))


def repository_files() -> list[Path]:
    """Tracked files plus new ones not ignored, so a check runs before the commit too."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    paths = (ROOT / name for name in listed.decode().split("\0") if name)
    return [path for path in paths if path.is_file()]  # a deleted, uncommitted file is gone


def outside_references(path: Path, root: Path = ROOT) -> list[str]:
    data = path.read_bytes()
    if b"\0" in data[:8192]:  # binary: weights, images
        return []
    text = data.decode("utf-8", errors="replace")
    return [
        f"{path.relative_to(root)}:{number}: {line.strip()[:120]}"
        for number, line in enumerate(text.splitlines(), 1)
        if OUTSIDE_PATH.search(line)
    ]


def test_a_workspace_path_is_found_and_ordinary_words_are_not(tmp_path: Path) -> None:
    sample = tmp_path / "train.yaml"
    joined = " / ".join(("ROOT.parent", '"shared"', '"data"'))
    sample.write_text(f"note: a shared prefix\ndata: {WORKSPACE_FILE}\npath = {joined}\n")
    assert outside_references(sample, tmp_path) == [
        f"train.yaml:2: data: {WORKSPACE_FILE}",
        f"train.yaml:3: path = {joined}",
    ]


def test_no_file_refers_to_a_workspace_outside_the_repository() -> None:
    files = repository_files()
    assert len(files) > 100  # the listing worked
    hits = [hit for path in files for hit in outside_references(path)]
    assert not hits, "paths outside the repository:\n" + "\n".join(hits)


@pytest.mark.parametrize("config", sorted(ROOT.glob("adapters/*/train.yaml")), ids=str)
def test_shipped_training_configs_read_only_repository_files(config: Path) -> None:
    """``gateway train --config adapters/<name>/train.yaml`` runs from the repository root."""
    cfg = load_config(config, [])
    inputs = [cfg.data, cfg.validation, cfg.test, cfg.labels_file]
    for path in (p for p in inputs if p is not None):
        assert not path.is_absolute() and (ROOT / path).is_file(), path
