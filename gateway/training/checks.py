"""Data checks before any training step: a readable table, hard failures stop the run."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from gateway.training.data import Example
from schemas import NAMED_MODELS

OK, WARN, FAIL = "ok", "warning", "FAIL"


@dataclass
class CheckReport:
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str) -> None:
        self.rows.append((name, status, detail))

    @property
    def failed(self) -> bool:
        return any(status == FAIL for _, status, _ in self.rows)

    def table(self) -> str:
        width = max(len(name) for name, _, _ in self.rows)
        lines = [f"{'check'.ljust(width)}  status   detail", f"{'-' * width}  -------  ------"]
        lines += [f"{n.ljust(width)}  {s.ljust(7)}  {d}" for n, s, d in self.rows]
        return "\n".join(lines)

    def as_dict(self) -> list[dict[str, str]]:
        return [{"check": n, "status": s, "detail": d} for n, s, d in self.rows]


def normalise(text: str) -> str:
    """Near-duplicate key: case, punctuation and spacing do not make a new example."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", text.lower())).strip()


def _examples(items: list[str], limit: int = 3) -> str:
    return "; ".join(repr(i[:60]) for i in items[:limit])


def run_checks(
    train: list[Example],
    held_out: dict[str, list[Example]],
    schema_name: str,
    labels: tuple[str, ...],
    token_lengths: list[int],
    max_length: int,
) -> CheckReport:
    """Completions are checked against ``NAMED_MODELS[schema_name]`` for ``labels``: the
    model ``/v1/classify`` validates the adapter's answers with."""
    report = CheckReport()
    every = train + [e for part in held_out.values() for e in part]

    model = NAMED_MODELS[schema_name](labels)
    bad = [e for e in every if not _valid(e.completion, model)]
    report.add(
        "completions match schema",
        FAIL if bad else OK,
        f"{len(bad)} of {len(every)} fail {schema_name!r}: {_examples([b.source for b in bad])}"
        if bad
        else f"{len(every)} valid against {schema_name!r}",
    )

    unknown = sorted({e.label for e in every if e.label not in labels}, key=str)
    report.add(
        "labels in label set",
        FAIL if unknown else OK,
        f"unknown labels: {unknown[:5]}" if unknown else f"{len(labels)} labels",
    )

    exact = Counter(e.text for e in train)
    dupes = [t for t, n in exact.items() if n > 1]
    conflicts = _conflicting(train)
    report.add(
        "exact duplicates",
        FAIL if conflicts else (WARN if dupes else OK),
        f"{len(conflicts)} texts with conflicting labels: {_examples(conflicts)}"
        if conflicts
        else (f"{len(dupes)} repeated texts: {_examples(dupes)}" if dupes else "none"),
    )

    near = Counter(normalise(e.text) for e in train)
    near_dupes = [t for t, n in near.items() if n > 1]
    extra = len(near_dupes) - len(dupes)
    report.add(
        "near duplicates",
        WARN if extra > 0 else OK,
        f"{extra} texts equal up to case/punctuation: {_examples(near_dupes)}"
        if extra > 0
        else "none",
    )

    train_keys = set(near)
    for name, part in held_out.items():
        leaked = [e.text for e in part if normalise(e.text) in train_keys]
        report.add(
            f"leakage train/{name}",
            WARN if leaked else OK,
            f"{len(leaked)} of {len(part)} {name} texts also in train: {_examples(leaked)}"
            if leaked
            else f"0 of {len(part)}",
        )

    counts = Counter(e.label for e in train)
    low, high = min(counts.values()), max(counts.values())
    missing = [lab for lab in labels if lab not in counts]
    report.add(
        "class balance",
        WARN if missing or high > 3 * low else OK,
        f"{len(counts)} classes, {low}..{high} examples each"
        + (f"; no training data for {missing[:5]}" if missing else ""),
    )

    too_long = sum(1 for n in token_lengths if n > max_length)
    report.add(
        "context length",
        FAIL if too_long else OK,
        f"{too_long} examples over {max_length} tokens"
        if too_long
        else f"longest {max(token_lengths, default=0)} of {max_length} tokens",
    )
    return report


def _valid(completion: str, model: type[BaseModel]) -> bool:
    """Strict: no string-to-number coercion the JSON Schema the engine enforces would refuse."""
    try:
        model.model_validate_json(completion, strict=True)
    except ValidationError:
        return False
    return True


def _conflicting(examples: list[Example]) -> list[str]:
    seen: dict[str, set[str | None]] = {}
    for e in examples:
        seen.setdefault(e.text, set()).add(e.label)
    return [t for t, found in seen.items() if len(found) > 1]
