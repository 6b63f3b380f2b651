"""Training data in: every accepted format becomes ``Example``s in one shape.

Accepted: labelled CSV/JSONL (``text`` + ``intent``/``label``/``category``), OpenAI
fine-tuning chat JSONL (``{"messages": [system, user, assistant]}``) and
prompt/completion JSONL. Labelled rows are rendered with the gateway's own classify
prompt; chat and prompt/completion rows keep their prompt and must carry a JSON
completion (checked against the schema later, in ``checks``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.common.usage import UsageError
from gateway.training.config import TrainConfig


@dataclass(frozen=True)
class LabelledExample:
    text: str
    label: str
    requires_human_agent: bool = False


@dataclass(frozen=True)
class Example:
    """One training pair: the user text, the JSON answer, and where it came from."""

    text: str
    completion: str
    label: str | None
    system_prompt: str | None = None
    source: str = ""


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
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where}: not JSON ({exc.msg})") from exc
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: not a JSON object")
    return raw


def _labelled_row(raw: dict, where: str) -> LabelledExample:
    text = raw.get("text")
    label = raw.get("intent", raw.get("label", raw.get("category")))
    if not isinstance(text, str) or not text.strip() or not isinstance(label, str) or not label:
        raise UsageError(f"{where}: needs a non-empty 'text' and 'intent' (or 'label')")
    human = raw.get("requires_human_agent", False)
    if isinstance(human, str):
        human = human.strip().lower() in {"1", "true", "yes"}
    return LabelledExample(text=text.strip(), label=label.strip(), requires_human_agent=bool(human))


def load_labelled(path: Path) -> list[LabelledExample]:
    text = _read_text(path)
    if path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = [_labelled_row(r, f"{path}:{reader.line_num}") for r in reader]
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
    except json.JSONDecodeError:
        return None
    return value.get("intent") if isinstance(value, dict) else None


def human_flag(example: Example) -> bool | None:
    """The answer's ``requires_human_agent``, when it has a boolean one."""
    try:
        value = json.loads(example.completion)
    except json.JSONDecodeError:
        return None
    flag = value.get("requires_human_agent") if isinstance(value, dict) else None
    return flag if isinstance(flag, bool) else None


def _chat_row(raw: dict, where: str) -> Example:
    messages = raw["messages"]
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages
    ):
        raise UsageError(f"{where}: 'messages' must be a list of objects with a text 'content'")
    roles = [m.get("role") for m in messages]
    if roles[-1:] != ["assistant"] or "user" not in roles:
        raise UsageError(f"{where}: messages must end with an assistant turn after a user turn")
    system = next((m["content"] for m in messages if m.get("role") == "system"), None)
    user = [m["content"] for m in messages if m.get("role") == "user"][-1]
    completion = messages[-1]["content"]
    return Example(user, completion, _label_of(completion), system, where)


def load_examples(path: Path, confidence: float) -> list[Example]:
    """Any supported file -> examples (labelled rows get the gateway's JSON answer)."""
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
        elif "prompt" in raw and "completion" in raw:
            if not isinstance(raw["prompt"], str) or not isinstance(raw["completion"], str):
                raise UsageError(f"{where}: 'prompt' and 'completion' must be strings")
            out.append(
                Example(raw["prompt"], raw["completion"], _label_of(raw["completion"]), None, where)
            )
        else:
            e = _labelled_row(raw, where)
            out.append(Example(e.text, answer_json(e, confidence), e.label, None, where))
    return out


def _by_label(examples: list[Example]) -> dict[str | None, list[Example]]:
    groups: dict[str | None, list[Example]] = {}
    for example in examples:
        groups.setdefault(example.label, []).append(example)
    return groups


def per_class_sample(examples: list[Example], per_class: int, seed: int) -> list[Example]:
    """At most ``per_class`` examples of each label, chosen reproducibly."""
    rng = random.Random(seed)
    by_label = _by_label(examples)
    picked: list[Example] = []
    for label in sorted(by_label, key=str):
        group = by_label[label]
        picked += rng.sample(group, min(per_class, len(group)))
    return picked


def split(
    examples: list[Example], val_share: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Deterministic stratified split (each label keeps its share in both parts)."""
    rng = random.Random(seed)
    train: list[Example] = []
    val: list[Example] = []
    by_label = _by_label(examples)
    for label in sorted(by_label, key=str):
        group = list(by_label[label])
        rng.shuffle(group)
        cut = round(len(group) * val_share) if len(group) > 1 else 0
        val += group[:cut]
        train += group[cut:]
    return train, val


def load_splits(cfg: TrainConfig) -> tuple[list[Example], list[Example], dict[str, list[Example]]]:
    """Train, validation (for the loss) and held-out sets (for evaluation), reproducibly:
    training and a later ``gateway eval`` of the same config see the same examples."""
    examples = load_examples(cfg.data, cfg.confidence)
    if cfg.validation is not None:
        train, val = examples, load_examples(cfg.validation, cfg.confidence)
    else:
        train, val = split(examples, cfg.val_share, cfg.seed)
    if cfg.per_class:
        train = per_class_sample(train, cfg.per_class, cfg.seed)
    held_out = {"validation": val}
    if cfg.test is not None:
        held_out["test"] = load_examples(cfg.test, cfg.confidence)
    return train, val, held_out
