"""Calibration texts: what the quantizer runs through the model to fit its scales. A
few hundred rows of the traffic the model will see (the shipped BANKING77 questions by
default), drawn with a seed so that the same command makes the same checkpoint."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from gateway.models.files import sha256_file
from gateway.models.info import ModelError

TEXT = "text"


@dataclass(frozen=True)
class Calibration:
    path: Path
    sha256: str
    rows: int  # texts in the file
    texts: tuple[str, ...]  # the ones drawn
    seed: int

    def record(self) -> dict[str, object]:
        """What the provenance manifest keeps (the texts are named by the file's hash)."""
        return {
            "file": str(self.path), "sha256": self.sha256, "rows": self.rows,
            "samples": len(self.texts), "seed": self.seed,
        }  # fmt: skip


def load_calibration(path: Path, samples: int, seed: int) -> Calibration:
    """``samples`` texts from a .csv or .jsonl file with a ``text`` column, drawn with
    ``seed`` (all of them when the file holds fewer)."""
    if samples < 1:
        raise ModelError(f"--samples must be at least 1, got {samples}")
    if not path.is_file():
        raise ModelError(f"calibration file {path} does not exist")
    if path.suffix not in (".csv", ".jsonl"):
        raise ModelError(f"calibration file {path} must be .csv or .jsonl")
    try:
        texts = _read_texts(path)
    except (UnicodeDecodeError, csv.Error, json.JSONDecodeError) as exc:
        raise ModelError(f"calibration file {path} cannot be read: {exc}") from exc
    if not texts:
        raise ModelError(f"calibration file {path} has no non-empty '{TEXT}' values")
    drawn = random.Random(seed).sample(texts, min(samples, len(texts)))
    return Calibration(path, sha256_file(path), len(texts), tuple(drawn), seed)


def _read_texts(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix == ".csv":
            reader = csv.DictReader(handle)
            if TEXT not in (reader.fieldnames or []):
                raise ModelError(f"calibration file {path} has no '{TEXT}' column")
            rows: list[object] = list(reader)
        else:
            rows = [json.loads(line) for line in handle if line.strip()]
    values = [row.get(TEXT) if isinstance(row, dict) else None for row in rows]
    if rows and all(value is None for value in values):
        raise ModelError(f"calibration file {path} has no '{TEXT}' column")
    return [value for value in values if isinstance(value, str) and value.strip()]
