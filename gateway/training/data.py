"""Labelled examples from JSONL (``text`` + ``intent``/``label``) or CSV (``text,label``)."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LabelledExample:
    text: str
    label: str
    requires_human_agent: bool = False


def sha256_text(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _row(raw: dict, where: str) -> LabelledExample:
    text = raw.get("text")
    label = raw.get("intent", raw.get("label", raw.get("category")))
    if not isinstance(text, str) or not text.strip() or not isinstance(label, str) or not label:
        raise ValueError(f"{where}: needs a non-empty 'text' and 'intent' (or 'label')")
    human = raw.get("requires_human_agent", False)
    if isinstance(human, str):
        human = human.strip().lower() in {"1", "true", "yes"}
    return LabelledExample(text=text.strip(), label=label.strip(), requires_human_agent=bool(human))


def load_labelled(path: Path) -> list[LabelledExample]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [_row(r, f"{path}:{i + 2}") for i, r in enumerate(csv.DictReader(handle))]
    else:
        rows = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                rows.append(_row(json.loads(line), f"{path}:{i + 1}"))
    if not rows:
        raise ValueError(f"{path} holds no examples")
    return rows
