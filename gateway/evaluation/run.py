"""Evaluate an adapter the way clients will use it: through the vLLM engine, with the
adapter's recorded prompt, answer format and label set, via the same ``ClassifyService``
that answers ``/v1/classify``.

For a decision-token adapter the calibration is fitted here, on the serving path: the
validation split's raw label log-probabilities (bf16, maybe a quantized base) give the
temperature and the escalation threshold, both written into the manifest; every split
is then scored as serving will answer with them. Results go into the manifest
(atomically), ``eval_predictions.jsonl`` and ``report.md`` beside it. The charts (a
reliability diagram, the coverage curve) need matplotlib, which the server does not
install: ``gateway-tools eval charts ADAPTER_DIR`` draws them from these files.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gateway.calibration import EscalationPolicy
from gateway.config import Settings
from gateway.engine.factory import default_engine
from gateway.errors import GatewayError
from gateway.evaluation.metrics import Item, recalibrated, score
from gateway.evaluation.report import render_report
from gateway.fileio import write_json_atomic
from gateway.service import Services
from gateway.training.calibrate import fit_blocks
from gateway.training.config import TrainConfig
from gateway.training.data import Example, human_flag, load_splits

CONCURRENCY = 16
TOP_IN_PREDICTIONS = 5


async def _classify_all(services: Any, adapter: str, items: list[Example], desc: str) -> list[Item]:
    gate = asyncio.Semaphore(CONCURRENCY)
    bar = tqdm(total=len(items), desc=desc, unit="item")

    async def one(example: Example) -> Item:
        async with gate:
            try:
                found = await services.classify.classify(example.text, adapter)
                return Item(
                    found.result.intent, found.confidence, found.probabilities,
                    found.label_logprobs, found.escalation_reason,
                )  # fmt: skip
            except GatewayError as exc:
                return Item(None, None, None, None, None, exc.code)
            finally:
                bar.update()

    results = await asyncio.gather(*(one(e) for e in items))
    bar.close()
    return list(results)


async def _classify_splits(
    adapter_dir: Path, cfg: TrainConfig, settings: Settings, held_out: dict[str, list[Example]]
) -> dict[str, list[Item]]:
    engine, base = default_engine(settings)
    scratch = tempfile.TemporaryDirectory()  # the serving registry is not touched
    settings = settings.model_copy(
        update={
            "adapter_store": adapter_dir.parent.parent,
            "registry_file": Path(scratch.name) / "registry.json",
            "adapters": {},
        }
    )
    services = Services.build(settings, engine, base)
    services.adapters.ensure(adapter_dir.parent.name, adapter_dir.name)
    await engine.start()  # type: ignore[attr-defined]
    try:
        await services.adapters.load(cfg.name)
        return {
            name: await _classify_all(services, cfg.name, items, f"eval {name}")
            for name, items in held_out.items()
        }
    finally:
        engine.shutdown()  # type: ignore[attr-defined]
        scratch.cleanup()


def refit(
    manifest: dict[str, Any],
    held_out: dict[str, list[Example]],
    answers: dict[str, list[Item]],
    target_accuracy: float,
) -> dict[str, list[Item]]:
    """Fit temperature and threshold on the served validation answers, record them in
    ``manifest``, and return every split as served with them. Legacy (JSON-answer)
    adapters and runs without validation answers are returned unchanged."""
    labels = tuple(manifest["labels"])
    fit = [
        (item.label_logprobs, labels.index(example.label or ""))
        for example, item in zip(
            held_out.get("validation", []), answers.get("validation", []), strict=True
        )
        if item.label_logprobs is not None
    ]
    if "answer" not in manifest or not fit:
        return answers
    escalate = (manifest.get("escalation") or {}).get("labels", [])
    calibration, escalation = fit_blocks(
        [row for row, _ in fit], [g for _, g in fit], labels, target_accuracy, escalate, "serving"
    )
    manifest["calibration"], manifest["escalation"] = calibration, escalation
    policy = EscalationPolicy(escalation["threshold"], frozenset(escalate))
    temperature = calibration["temperature"]
    return {
        name: [recalibrated(item, labels, temperature, policy) for item in items]
        for name, items in answers.items()
    }


def _prediction(split: str, example: Example, item: Item, labels: tuple[str, ...]) -> dict:
    return {
        "split": split,
        "text": example.text,
        "gold": example.label,
        "predicted": item.predicted,
        "confidence": item.confidence,
        "top": item.top(labels, TOP_IN_PREDICTIONS),
        "escalation_reason": item.escalation_reason,
        "requires_human_agent": None if item.error else item.escalated,
        "error": item.error,
    }


async def _evaluate(adapter_dir: Path, cfg: TrainConfig, settings: Settings) -> dict:
    _, _, held_out = load_splits(cfg)
    held_out = {name: items for name, items in held_out.items() if items}
    manifest_path = adapter_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    labels = tuple(manifest["labels"])
    answers = await _classify_splits(adapter_dir, cfg, settings, held_out)
    answers = refit(manifest, held_out, answers, cfg.escalation_target_accuracy)
    metrics: dict[str, Any] = {"backend": settings.structured_backend}
    predictions: list[dict[str, Any]] = []
    for name, examples in held_out.items():
        gold = [e.label or "" for e in examples]
        metrics[name] = score(gold, answers[name], labels, [human_flag(e) for e in examples])
        predictions += [
            _prediction(name, e, item, labels)
            for e, item in zip(examples, answers[name], strict=True)
        ]
    manifest["evaluation"] = metrics
    write_json_atomic(manifest_path, manifest)
    (adapter_dir / "eval_predictions.jsonl").write_text(
        "".join(json.dumps(p) + "\n" for p in predictions)
    )
    (adapter_dir / "report.md").write_text(render_report(manifest))
    return metrics


def evaluate_adapter(adapter_dir: Path, cfg: TrainConfig, settings: Settings) -> dict:
    metrics = asyncio.run(_evaluate(adapter_dir, cfg, settings))
    print(json.dumps(metrics, indent=2))
    return metrics
