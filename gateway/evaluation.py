"""Evaluate an adapter the way clients will use it: through the vLLM engine, with the
adapter's recorded prompt and label set, under constrained decoding, via the same
``ClassifyService`` that answers ``/v1/classify``. Results go into the manifest
(atomically) and a ``report.md`` beside it.

A top layer, beside the server: it runs the serving stack (engine + services), so it
lives outside ``gateway.training``, which never imports serving code.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gateway.config import Settings
from gateway.engine.factory import default_engine
from gateway.errors import GatewayError
from gateway.fileio import write_json_atomic
from gateway.scoring import macro_f1
from gateway.service import Services
from gateway.training.config import TrainConfig
from gateway.training.data import Example, load_splits

CONCURRENCY = 16


def score(
    gold: list[str],
    predicted: list[str | None],
    errors: list[str | None],
    human_gold: list[bool | None] | None = None,
    human_predicted: list[bool | None] | None = None,
) -> dict:
    """Accuracy, macro-F1 and schema-valid rate; ``requires_human_agent`` accuracy too
    when the data labels it (a flag the routing code acts on, so it is scored apart)."""
    n = len(gold)
    correct = sum(g == p for g, p in zip(gold, predicted, strict=True))
    result: dict[str, Any] = {
        "items": n,
        "accuracy": round(correct / n, 4) if n else None,
        "macro_f1": round(macro_f1(gold, predicted), 4),
        "schema_valid_rate": round(sum(e is None for e in errors) / n, 4) if n else None,
        "errors": dict(Counter(e for e in errors if e)),
        "top_confusions": [
            {"gold": g, "predicted": p, "count": c}
            for (g, p), c in Counter(
                (g, p) for g, p in zip(gold, predicted, strict=True) if p is not None and g != p
            ).most_common(5)
        ],
    }
    pairs = [
        (g, p)
        for g, p in zip(human_gold or [], human_predicted or [], strict=True)
        if g is not None
    ]
    if pairs and any(g for g, _ in pairs):  # all-false labels say nothing about the flag
        result["human_agent_accuracy"] = round(sum(g == p for g, p in pairs) / len(pairs), 4)
    return result


def gold_human_flag(example: Example) -> bool | None:
    try:
        value = json.loads(example.completion)
    except json.JSONDecodeError:
        return None
    flag = value.get("requires_human_agent") if isinstance(value, dict) else None
    return flag if isinstance(flag, bool) else None


async def _classify_all(services: Any, adapter: str, items: list[Example], desc: str) -> list:
    gate = asyncio.Semaphore(CONCURRENCY)
    bar = tqdm(total=len(items), desc=desc, unit="item")

    async def one(example: Example) -> tuple[str | None, bool | None, str | None]:
        async with gate:
            try:
                found = await services.classify.classify(example.text, adapter)
                return found.result.intent, found.result.requires_human_agent, None
            except GatewayError as exc:
                return None, None, exc.code
            finally:
                bar.update()

    results = await asyncio.gather(*(one(e) for e in items))
    bar.close()
    return results


async def _evaluate(adapter_dir: Path, cfg: TrainConfig, settings: Settings) -> dict:
    _, _, held_out = load_splits(cfg)
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
        metrics: dict[str, Any] = {"backend": settings.structured_backend}
        predictions: list[dict[str, Any]] = []
        for split_name, items in held_out.items():
            results = await _classify_all(services, cfg.name, items, f"eval {split_name}")
            gold = [e.label or "" for e in items]
            metrics[split_name] = score(
                gold,
                [r[0] for r in results],
                [r[2] for r in results],
                [gold_human_flag(e) for e in items],
                [r[1] for r in results],
            )
            predictions += [
                {
                    "split": split_name,
                    "text": e.text,
                    "gold": e.label,
                    "predicted": p,
                    "requires_human_agent": human,
                    "error": err,
                }
                for e, (p, human, err) in zip(items, results, strict=True)
            ]
    finally:
        engine.shutdown()  # type: ignore[attr-defined]
        scratch.cleanup()
    manifest_path = adapter_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
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


def render_report(manifest: dict) -> str:
    training = manifest["training"]
    lines = [
        f"# Adapter `{manifest['name']}/{manifest['version']}`",
        "",
        f"Base model: {manifest['base_model']['name']} "
        f"(fingerprint `{manifest['base_model']['fingerprint'][:16]}`). "
        f"Labels: {len(manifest['labels'])}. Schema: `{manifest['schema']['name']}`.",
        "",
        f"Reproduce: `{manifest['launch']}`",
        "",
        "## Evaluation (vLLM engine, adapter prompt, constrained decoding)",
        "",
        "| split | items | accuracy | macro-F1 | schema-valid | requires_human_agent accuracy |",
        "|---|---|---|---|---|---|",
    ]
    evaluation = {
        k: m for k, m in (manifest.get("evaluation") or {}).items() if isinstance(m, dict)
    }
    for split_name, m in evaluation.items():
        lines.append(
            f"| {split_name} | {m['items']} | {m['accuracy']} | {m['macro_f1']} "
            f"| {m['schema_valid_rate']} | {m.get('human_agent_accuracy', 'n/a')} |"
        )
    for split_name, m in evaluation.items():
        if m.get("top_confusions"):
            lines += ["", f"Most confused on {split_name} (gold → predicted, count):", ""]
            lines += [
                f"- {c['gold']} → {c['predicted']}: {c['count']}" for c in m["top_confusions"]
            ]
    lines += [
        "",
        "## Training",
        "",
        f"- examples: {manifest['dataset']['train_size']} (per class: "
        f"{manifest['dataset']['per_class'] or 'all'}), epochs run: {len(training['history'])}",
        f"- {training['tokens']} tokens in {training['seconds']} s "
        f"({training['tokens_per_second']} tokens/s), bf16 autocast: {training['bf16']}",
        f"- best validation loss: {training['best_val_loss']}",
        "",
        "| epoch | train loss | validation loss |",
        "|---|---|---|",
        *(
            f"| {h['epoch']} | {h['train_loss']:.4f} | {h['val_loss']} |"
            for h in training["history"]
        ),
        "",
        "## Data checks",
        "",
        "| check | status | detail |",
        "|---|---|---|",
        *(f"| {c['check']} | {c['status']} | {c['detail']} |" for c in manifest["data_checks"]),
        "",
    ]
    return "\n".join(lines)
