"""Data checks before any training step: a readable table, hard failures stop the run."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from gateway.training.examples import Example
from gateway.training.task import Task
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
    task: Task,
    labels: tuple[str, ...],
    token_lengths: list[int],
    max_length: int,
) -> CheckReport:
    """Classification completions are checked against the task's named model for
    ``labels`` (what ``/v1/classify`` validates the adapter's answers with); every answer
    of a structured task against its schema; plain-text answers against nothing."""
    report = CheckReport()
    every = train + [e for part in held_out.values() for e in part]
    if task.kind == "classification":
        _classification(report, every, task.schema_name or "", labels)
    elif task.kind == "structured":
        _answers(report, every, task)
    else:
        report.add("answers", OK, f"{len(every)} plain-text answers, served without a schema")

    exact = Counter(e.text for e in train)
    dupes = [t for t, n in exact.items() if n > 1]
    conflicts = _conflicting(train, task.kind == "classification")
    what = "labels" if task.kind == "classification" else "answers"
    # the same prompt answered two ways teaches nothing, unless answers are free text
    report.add(
        "exact duplicates",
        (WARN if task.kind == "text" else FAIL) if conflicts else (WARN if dupes else OK),
        f"{len(conflicts)} prompts with conflicting {what}: {_examples(conflicts)}"
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

    if task.kind == "classification":
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


def _classification(
    report: CheckReport, every: list[Example], schema_name: str, labels: tuple[str, ...]
) -> None:
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


def _answers(report: CheckReport, every: list[Example], task: Task) -> None:
    """Every trained answer of every row (held-out ones too) against the schema; the
    failing lines are named, the first with its reason."""
    bad: list[tuple[str, str]] = []
    total = 0
    for example in every:
        for answer in example.answers:
            total += 1
            problem = task.problem(answer)
            if problem is not None:
                bad.append((example.source, problem))
    name = task.schema_name
    if bad:
        lines = ", ".join(dict.fromkeys(source for source, _ in bad[:5]))
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        detail = f"{len(bad)} of {total} fail {name!r}: {lines}{more}; {bad[0][0]}: {bad[0][1]}"
    else:
        detail = f"{total} valid against {name!r} ({task.source})"
    report.add("answers match schema", FAIL if bad else OK, detail)


def _valid(completion: str, model: type[BaseModel]) -> bool:
    """Strict: no string-to-number coercion the JSON Schema the engine enforces would refuse."""
    try:
        model.model_validate_json(completion, strict=True)
    except ValidationError:
        return False
    return True


def _conflicting(examples: list[Example], by_label: bool) -> list[str]:
    """Texts given two labels; or, for answers, one conversation given two answers."""
    seen: dict[tuple[str, ...], set[str | None]] = {}
    for e in examples:
        context = [m.content for m in e.messages[:-1]] if e.messages else []
        key = (e.text,) if by_label else (e.text, *context)
        seen.setdefault(key, set()).add(e.label if by_label else e.completion)
    return [key[0] for key, found in seen.items() if len(found) > 1]
