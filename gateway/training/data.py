"""Training data in: every accepted format becomes ``Example``s in one shape.

Accepted: labelled CSV/JSONL (``text`` + ``intent``/``label``/``category``), OpenAI
fine-tuning chat JSONL (``{"messages": [...]}``, multi-turn, ``weight`` on assistant
turns; ``chats``) and prompt/completion JSONL. Labelled rows are rendered with the
gateway's own classify prompt; chat and prompt/completion rows keep their conversation.
``load_splits`` then resolves the task (``task``: classification, structured or text)
and splits it, seeded and stratified.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.common.usage import UsageError
from gateway.training.chats import MAX_FIELD_CHARS, chat_messages, field_text, prompt_messages
from gateway.training.config import TrainConfig
from gateway.training.examples import Example, Message
from gateway.training.task import Task, resolve_task

__all__ = ["Example", "Splits", "load_examples", "load_splits", "load_task_splits", "split"]

MAX_LINE_BYTES = 1_000_000  # a JSONL line past this is a mistake (or an attack), not a row


@dataclass(frozen=True)
class LabelledExample:
    text: str
    label: str
    requires_human_agent: bool = False


def sha256_text(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_text(path: Path) -> str:
    """The file as text (line ends kept, for ``csv``); a missing or unreadable file is
    the user's mistake, told in one line."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError as exc:
        raise UsageError(f"data file {path} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"data file {path} is not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:  # a folder, no permission
        raise UsageError(f"data file {path} cannot be read: {exc.strerror}") from exc


def _json_row(line: str, where: str) -> dict[str, Any]:
    size = len(line.encode("utf-8", "surrogatepass"))
    if size > MAX_LINE_BYTES:
        raise UsageError(f"{where}: the line is {size:,} bytes; the limit is {MAX_LINE_BYTES:,}")
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where}: not JSON ({exc.msg})") from exc
    except RecursionError as exc:
        raise UsageError(f"{where}: nested too deeply to read") from exc
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: not a JSON object")
    return raw


def _labelled_row(raw: dict, where: str) -> LabelledExample:
    text = raw.get("text")
    label = raw.get("intent", raw.get("label", raw.get("category")))
    if not isinstance(text, str) or not text.strip() or not isinstance(label, str) or not label:
        raise UsageError(f"{where}: needs a non-empty 'text' and 'intent' (or 'label')")
    if len(text) > MAX_FIELD_CHARS or len(label) > MAX_FIELD_CHARS:
        raise UsageError(f"{where}: a field is over the limit of {MAX_FIELD_CHARS:,} characters")
    human = raw.get("requires_human_agent", False)
    if isinstance(human, str):
        human = human.strip().lower() in {"1", "true", "yes"}
    return LabelledExample(text=text.strip(), label=label.strip(), requires_human_agent=bool(human))


def load_labelled(path: Path) -> list[LabelledExample]:
    text = _read_text(path)
    if path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            rows = [_labelled_row(r, f"{path}:{reader.line_num}") for r in reader]
        except csv.Error as exc:  # a field over csv's own limit (128 KiB), a stray quote
            raise UsageError(f"{path}:{reader.reader.line_num}: not a CSV row ({exc})") from exc
    else:
        rows = []
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                where = f"{path}:{i + 1}"
                rows.append(_labelled_row(_json_row(line, where), where))
    if not rows:
        raise UsageError(f"data file {path} holds no examples")
    return rows


def answer_json(example: LabelledExample, confidence: float) -> str:
    """Whitespace-free, in schema field order: what the constrained decoder emits."""
    value = {
        "intent": example.label,
        "confidence": confidence,
        "requires_human_agent": example.requires_human_agent,
    }
    return json.dumps(value, separators=(",", ":"))


def _label_of(completion: str) -> str | None:
    try:
        value = json.loads(completion)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value.get("intent") if isinstance(value, dict) else None


def human_flag(example: Example) -> bool | None:
    """The answer's ``requires_human_agent``, when it has a boolean one."""
    try:
        value = json.loads(example.completion)
    except (json.JSONDecodeError, RecursionError):
        return None
    flag = value.get("requires_human_agent") if isinstance(value, dict) else None
    return flag if isinstance(flag, bool) else None


def _chat_row(raw: dict, where: str) -> Example:
    """The conversation up to its last trained answer; ``text`` is the user message
    that answer replies to (what the checks compare and augmentation rewrites)."""
    messages = chat_messages(raw, where)
    system = next((m.content for m in messages if m.role == "system"), None)
    user = [m.content for m in messages if m.role == "user"][-1]
    completion = messages[-1].content
    return Example(user, completion, _label_of(completion), system, where, messages)


def _fields_row(raw: dict, fields: tuple[str, ...], where: str) -> Example:
    """A ``text`` row whose answer is the object of ``fields`` (``answer_fields``)."""
    text = field_text(raw.get("text"), "'text'", where)
    missing = [name for name in fields if name not in raw]
    if missing:
        raise UsageError(f"{where}: no {missing[0]!r}, which answer_fields names")
    answer = json.dumps({name: raw[name] for name in fields}, ensure_ascii=False)
    messages = (Message("user", text), Message("assistant", answer, 1))
    return Example(text, answer, _label_of(answer), None, where, messages)


def load_examples(
    path: Path, confidence: float, answer_fields: tuple[str, ...] = ()
) -> list[Example]:
    """Any supported file -> examples (labelled rows get the gateway's JSON answer, or,
    with ``answer_fields``, the object of those fields)."""
    if path.suffix == ".csv" and answer_fields:
        reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
        try:
            return [_fields_row(r, answer_fields, f"{path}:{reader.line_num}") for r in reader]
        except csv.Error as exc:
            raise UsageError(f"{path}:{reader.reader.line_num}: not a CSV row ({exc})") from exc
    if path.suffix == ".csv":
        labelled = load_labelled(path)
        return [
            Example(e.text, answer_json(e, confidence), e.label, None, str(path)) for e in labelled
        ]
    lines = _read_text(path).splitlines()
    if not any(line.strip() for line in lines):
        raise UsageError(f"data file {path} holds no examples")
    out: list[Example] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{path}:{i + 1}"  # the line number an editor shows
        raw = _json_row(line, where)
        if "messages" in raw:
            out.append(_chat_row(raw, where))
        elif answer_fields:
            out.append(_fields_row(raw, answer_fields, where))
        elif "prompt" in raw and "completion" in raw:
            messages = prompt_messages(raw, where)
            prompt, completion = messages[0].content, messages[1].content
            out.append(Example(prompt, completion, _label_of(completion), None, where, messages))
        else:
            e = _labelled_row(raw, where)
            out.append(Example(e.text, answer_json(e, confidence), e.label, None, where))
    return out


Key = Callable[[Example], str | None]


def _label(example: Example) -> str | None:
    return example.label


def _groups(examples: list[Example], key: Key) -> dict[str | None, list[Example]]:
    groups: dict[str | None, list[Example]] = {}
    for example in examples:
        groups.setdefault(key(example), []).append(example)
    return groups


def per_class_sample(
    examples: list[Example], per_class: int, seed: int, key: Key = _label
) -> list[Example]:
    """At most ``per_class`` examples of each label (or stratum), chosen reproducibly."""
    rng = random.Random(seed)
    by_label = _groups(examples, key)
    picked: list[Example] = []
    for label in sorted(by_label, key=str):
        group = by_label[label]
        picked += rng.sample(group, min(per_class, len(group)))
    return picked


def split(
    examples: list[Example], val_share: float, seed: int, key: Key = _label
) -> tuple[list[Example], list[Example]]:
    """Deterministic stratified split (each label, or stratum, keeps its share in both)."""
    rng = random.Random(seed)
    train: list[Example] = []
    val: list[Example] = []
    by_label = _groups(examples, key)
    for label in sorted(by_label, key=str):
        group = list(by_label[label])
        rng.shuffle(group)
        cut = round(len(group) * val_share) if len(group) > 1 else 0
        val += group[:cut]
        train += group[cut:]
    return train, val


@dataclass(frozen=True)
class Splits:
    train: list[Example]
    val: list[Example]
    held_out: dict[str, list[Example]]  # "validation" (the loss's) and "test" when given
    task: Task


def load_task_splits(cfg: TrainConfig) -> Splits:
    """The task and its train, validation (for the loss) and held-out sets (for
    evaluation), reproducibly: training and a later ``gateway eval`` of the same config
    see the same examples. The task is resolved from every file given (``task``), and a
    structured task's answers are rewritten as the constrained decoder writes them."""
    fields = tuple(cfg.answer_fields)
    examples = load_examples(cfg.data, cfg.confidence, fields)
    given_val = load_examples(cfg.validation, cfg.confidence, fields) if cfg.validation else None
    test = load_examples(cfg.test, cfg.confidence, fields) if cfg.test is not None else None
    task = resolve_task(cfg, examples + (given_val or []) + (test or []))
    examples = [task.canonical(e) for e in examples]
    if given_val is not None:
        train, val = examples, [task.canonical(e) for e in given_val]
    else:
        train, val = split(examples, cfg.val_share, cfg.seed, task.stratum)
    if cfg.per_class:
        train = per_class_sample(train, cfg.per_class, cfg.seed, task.stratum)
    held_out = {"validation": val}
    if test is not None:
        held_out["test"] = [task.canonical(e) for e in test]
    return Splits(train, val, held_out, task)


def load_splits(cfg: TrainConfig) -> tuple[list[Example], list[Example], dict[str, list[Example]]]:
    """``load_task_splits`` without the task (what evaluation reads)."""
    parts = load_task_splits(cfg)
    return parts.train, parts.val, parts.held_out
