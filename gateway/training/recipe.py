"""LoRA training recipe: setup -> checks -> train -> calibrate -> save -> evaluate.

Reads top to bottom like a torchtune recipe. A classification example is rendered with
exactly the prompt ``/v1/classify`` uses (same system prompt builder, same chat
template); a structured or plain-text one as the chat request a client sends. The loss
covers only the answer (``answers``: the label's decision token by default, the trained
assistant turns of a conversation), and
the adapter folder it writes is what the gateway loads, with a manifest recording the
base model, prompt, answer format, schema, label set, calibration and escalation
defaults, so the gateway serves it as it was trained.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.common.prompts import ChatTemplateError, DecisionTokenError
from gateway.common.usage import UsageError
from gateway.models import ModelInfo
from gateway.registry.publish import publish, require_new_version, staging
from gateway.registry.store import AdapterStore, StoreLimits
from gateway.training.answers import Answer, DecisionTokenAnswer, make_answer
from gateway.training.augment import augment
from gateway.training.calibrate import escalation_labels, fit_blocks
from gateway.training.checks import CheckReport, run_checks
from gateway.training.config import TrainConfig
from gateway.training.data import Example, load_task_splits, sha256_text
from gateway.training.loop import Outcome, Progress, run_epochs
from gateway.training.manifest import build_manifest, write_json_atomic
from gateway.training.schedule import plan
from gateway.training.task import Task


class DataCheckFailed(ValueError):
    """The data checks found a hard failure; the table (``report``, when the checks ran)
    says which."""

    def __init__(self, message: str, report: CheckReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Prepared:
    train: list[Example]
    held_out: dict[str, list[Example]]
    labels: tuple[str, ...]
    answer: Answer
    rows: list  # the training examples encoded, before any augmentation
    val_rows: list
    checks: CheckReport
    escalate: list[str]  # labels that always go to a person
    task: Task

    @property
    def system_prompt(self) -> str | None:
        return self.answer.system_prompt


def _labels(cfg: TrainConfig, task: Task, train: list[Example]) -> tuple[str, ...]:
    """The label set of a classification task (none for others), and what the task is."""
    if task.kind != "classification":
        if cfg.escalation_labels:
            raise UsageError("escalation_labels are for classification tasks")
        schema = f", schema {task.schema_name!r} ({task.source})" if task.schema else ""
        print(f"task: {task.kind}{schema}", flush=True)
        if task.source == "inferred":  # shown, and recorded in the manifest
            print("inferred schema:", json.dumps(task.schema, ensure_ascii=False), flush=True)
        return ()
    labels = cfg.label_set() or tuple(sorted({e.label for e in train if e.label}))
    unknown = sorted(set(cfg.escalation_labels) - set(labels))
    if unknown:
        raise UsageError(f"escalation_labels outside the label set: {unknown}")
    return labels


def prepare(cfg: TrainConfig, tokenizer: Any) -> Prepared:
    """Load, split and check the data; raises ``DataCheckFailed`` before any training."""
    parts = load_task_splits(cfg)
    train, val, held_out, task = parts.train, parts.val, parts.held_out, parts.task
    labels = _labels(cfg, task, train)
    try:
        answer = make_answer(cfg, tokenizer, labels, task)
    except DecisionTokenError as exc:
        raise DataCheckFailed(f"{exc}; train with answer=json instead") from exc
    try:
        rows = [answer.encode(e, e.text) for e in train]
        val_rows = [answer.encode(e, e.text) for e in val]
    except ChatTemplateError as exc:
        raise DataCheckFailed(str(exc)) from exc
    lengths = [len(ids) for ids, _ in rows]
    report = run_checks(train, held_out, task, labels, lengths, cfg.max_length)
    print(report.table(), flush=True)
    if report.failed:
        name, _, detail = next(row for row in report.rows if row[1] == "FAIL")
        raise DataCheckFailed(
            f"data checks failed (table above), first {name}: {detail}; nothing was trained",
            report,
        )
    escalate = escalation_labels(cfg.escalation_labels, train, labels) if labels else []
    return Prepared(train, held_out, labels, answer, rows, val_rows, report, escalate, task)


def augmented(cfg: TrainConfig, data: Prepared, epoch: int) -> list:
    """The epoch's rows: about ``cfg.augment`` of them re-encoded from a rewritten text.
    Classification only: a structured answer may copy words of the message (an
    extraction's values), which a rewrite of the message would no longer match."""
    if not cfg.augment or data.task.kind != "classification":
        return data.rows
    texts = augment([e.text for e in data.train], cfg.augment, cfg.seed, epoch)
    return [
        row if text == example.text else data.answer.encode(example, text)
        for example, text, row in zip(data.train, texts, data.rows, strict=True)
    ]


def calibration(cfg: TrainConfig, data: Prepared, outcome: Outcome) -> dict[str, Any]:
    """The manifest's answer, calibration and escalation blocks (decision tokens only),
    fitted on the best epoch's validation logits; evaluation refits them on the serving
    path."""
    if not isinstance(data.answer, DecisionTokenAnswer):
        return {}
    blocks: dict[str, Any] = {"answer": data.answer.manifest_block()}
    if outcome.best is not None and outcome.best.logits is not None:
        gold = [label for _, label in data.val_rows]
        blocks["calibration"], blocks["escalation"] = fit_blocks(
            outcome.best.logits, gold, data.labels, cfg.escalation_target_accuracy,
            data.escalate, "training",
        )  # fmt: skip
    else:  # no validation data: nothing to fit a threshold on
        blocks["escalation"] = {
            "threshold": 0.0, "labels": data.escalate,
            "target_accuracy": cfg.escalation_target_accuracy,
            "val_coverage": None, "val_accuracy_auto": None,
        }  # fmt: skip
    return blocks


def _load_model(cfg: TrainConfig, model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    if cfg.qlora:  # CUDA only: 4-bit base via bitsandbytes
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
        model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quant)
        return prepare_model_for_kbit_training(model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)


def train(
    cfg: TrainConfig,
    base: ModelInfo,
    limits: StoreLimits,
    progress: Progress | None = None,
    threads: int | None = None,
    clock: Callable[[], float] | None = None,
) -> Path:
    """Train and publish ``cfg.name/cfg.version`` into the store at ``cfg.out_root``.

    ``limits`` are the serving gateway's (``store_limits``): a version it would refuse,
    or one that exists, fails here before any training, and is checked again at publish.
    ``threads``: torch's (default every core; a job beside serving takes fewer).
    ``clock``: what ``max_train_minutes`` is measured with (default wall time).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    # setup
    base = base.unquantized()  # a quantized base: train on its source, the same family
    store = AdapterStore(cfg.out_root, limits)
    require_new_version(store, cfg.name, cfg.version)
    store.check_lora(cfg.rank, list(cfg.target_modules), f"adapter {cfg.name}/{cfg.version}")
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    data = prepare(cfg, tokenizer)
    if progress is not None:
        progress.checks(data.checks.as_dict())
    steps = plan(cfg, len(data.rows))
    print(f"plan: {steps.epochs} epochs of {steps.steps_per_epoch} steps, batch "
          f"{steps.batch_size}, warm-up {steps.warmup_steps} steps", flush=True)  # fmt: skip
    model = get_peft_model(
        _load_model(cfg, base.path),
        LoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=list(cfg.target_modules),
            task_type="CAUSAL_LM",
        ),
    )
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def autocast() -> Any:
        if cfg.bf16 and not cfg.qlora:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return nullcontext()

    # train (the best validation epoch's weights are kept)
    outcome = run_epochs(
        model, data.answer, lambda epoch: augmented(cfg, data, epoch), data.val_rows, cfg,
        steps, pad, autocast, progress=progress, **({"clock": clock} if clock else {}),
    )  # fmt: skip

    # save: stage in the store, then publish (validate, atomic rename, never replace)
    manifest = build_manifest(cfg, base, data, steps, outcome.metrics(), sha256_text(cfg.data))
    manifest.update(calibration(cfg, data, outcome))
    with staging(store, cfg.name, cfg.version) as folder:
        model.save_pretrained(folder, safe_serialization=True)
        (folder / "README.md").unlink(missing_ok=True)  # PEFT's model-card stub
        write_json_atomic(folder / "manifest.json", manifest)
        return publish(store, cfg.name, cfg.version, folder).path
