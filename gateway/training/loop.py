"""The epochs: optimizer steps, a validation pass after each, and three ways to stop.

The run ends when the planned epochs are done, when validation NLL has not improved for
``early_stopping_patience`` epochs, or when the next epoch would not fit in
``max_train_minutes`` (a step past the budget also ends the epoch it is in). Whichever
it is, the LoRA weights of the best validation epoch are what is kept.

The plan is fitted to the budget as the run goes: after ``PACE_STEPS`` steps, and again
after every epoch, the optimizer steps still planned are cut to those that fit at the
pace measured (the last epoch may end early), and the learning-rate schedule is shortened
with them, so a slow or busy machine still ends on a decayed learning rate instead of
being cut off mid-schedule.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.training.answers import Answer, Validation
from gateway.training.batching import batches
from gateway.training.calibrate import predictions
from gateway.training.config import TrainConfig
from gateway.training.schedule import Plan, lr_factor, steps_that_fit

PACE_STEPS = 20  # optimizer steps timed before the plan is first fitted to the budget


class Progress(Protocol):
    """What a caller hears as a run goes (the fine-tuning worker turns it into job events
    and checkpoints): the recipe reports the data checks, the loop each optimizer step and
    each epoch with the model as it is then."""

    def checks(self, rows: list[dict[str, str]]) -> None: ...

    def step(self, values: dict[str, Any]) -> None: ...

    def epoch(self, values: dict[str, Any], model: Any) -> None: ...


def accuracy(val: Validation | None, val_rows: list) -> float | None:
    """Share of validation rows whose top label logit is the gold label (decision tokens
    only: a JSON answer has no label logits)."""
    if val is None or val.logits is None or not val_rows:
        return None
    gold = [label for _, label in val_rows]
    hits = sum(p == g for p, g in zip(predictions(val.logits), gold, strict=True))
    return hits / len(gold)


@dataclass
class Outcome:
    history: list[dict[str, Any]] = field(default_factory=list)
    best: Validation | None = None
    stopped: str = "completed"  # or "early_stopping", "time_budget"
    planned_steps: int = 0
    fitted_steps: int = 0  # fewer than planned when the budget could not hold them
    examples: int = 0  # rows through a training step (augmented ones included)
    tokens: int = 0  # their prompt (and answer) tokens, shared prefix counted per row
    seconds: float = 0.0  # the whole loop, validation passes included

    def metrics(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "epochs_run": len(self.history),
            "planned_steps": self.planned_steps,
            "fitted_steps": self.fitted_steps,
            "stopped": self.stopped,
            "best_val_loss": self.best.nll if self.best else None,
            "examples": self.examples,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 1),
            "examples_per_second": round(self.examples / self.seconds, 2),
            "tokens_per_second": round(self.tokens / self.seconds, 1),
        }


def run_epochs(
    model: Any,
    answer: Answer,
    epoch_rows: Callable[[int], list],
    val_rows: list,
    cfg: TrainConfig,
    plan: Plan,
    pad: int,
    autocast: Callable[[], AbstractContextManager[Any]],
    clock: Callable[[], float] = time.perf_counter,
    progress: Progress | None = None,
) -> Outcome:
    """Train ``model`` in place; on return it holds the best epoch's LoRA weights."""
    import torch
    from tqdm import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate)
    horizon = plan.total_steps  # optimizer steps; cut by ``fit`` when the budget is short
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, plan.warmup_steps, horizon, cfg.lr_schedule)
    )

    def validate() -> Validation | None:
        if not val_rows:
            return None
        model.eval()
        with torch.no_grad(), autocast():
            result = answer.validate(model, val_rows, plan.batch_size, pad, cfg.share_prefix)
        model.train()
        return result

    def fit(done: int, step_seconds: float) -> None:
        """Cut the steps after ``done`` to those that fit in the budget left now, at
        ``step_seconds`` a step (validation included)."""
        nonlocal horizon
        fitted = done + steps_that_fit(budget - (clock() - started), step_seconds)
        if fitted < horizon:
            horizon = max(done, 1, fitted)
            bar.total = horizon
            epochs = f"{horizon / plan.steps_per_epoch:.2f} epochs"
            bar.write(f"at {step_seconds:.2f} s a step, {horizon} of {plan.total_steps} steps "
                      f"({epochs}) fit: schedule shortened")  # fmt: skip

    rng = random.Random(cfg.seed)
    out, budget = Outcome(planned_steps=plan.total_steps), cfg.max_train_minutes * 60
    best_state, patience = None, cfg.early_stopping_patience
    started = clock()
    model.train()
    bar = tqdm(total=plan.total_steps, desc=f"training {cfg.name}", unit="step")
    val_share = len(val_rows) / max(1, plan.steps_per_epoch * plan.batch_size)
    epoch = steps = 0
    while steps < horizon:
        epoch += 1
        rows, losses, epoch_started = epoch_rows(epoch), [], clock()
        for n, chunk in enumerate(batches(rows, plan.batch_size, rng), start=1):
            with autocast():
                loss, num_tokens = answer.loss(model, rows, chunk, pad, cfg.share_prefix)
            (loss / cfg.grad_accum).backward()
            out.examples, out.tokens = out.examples + len(chunk), out.tokens + num_tokens
            losses.append(float(loss.detach()))
            if n % cfg.grad_accum == 0:
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                steps += 1
                speed = out.examples / (clock() - started)
                bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}", ex_s=f"{speed:.1f}")
                bar.update()
                if progress is not None:
                    progress.step({"step": steps, "epoch": epoch, "train_loss": losses[-1],
                                   "tokens": out.tokens, "seconds": clock() - started})  # fmt: skip
                if steps == PACE_STEPS:
                    # validation is forward only, about a third of a training step per batch
                    fit(steps, (clock() - started) / steps * (1 + val_share / 3))
                if steps >= horizon:
                    break
            if clock() - started > budget:
                out.stopped = "time_budget"
                break
        val = validate()
        out.history.append(
            {
                "epoch": epoch,
                "train_loss": sum(losses) / len(losses),
                "val_loss": val.nll if val else None,
            }
        )
        bar.write(", ".join(f"{k}={v}" for k, v in out.history[-1].items()))
        if progress is not None:
            values = {**out.history[-1], "step": steps, "val_accuracy": accuracy(val, val_rows)}
            progress.epoch(values, model)
        if val is not None and (out.best is None or val.nll < out.best.nll):
            out.best, patience = val, cfg.early_stopping_patience
            best_state = {
                k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k
            }
        elif val is not None and cfg.early_stopping_patience:
            patience -= 1
            if patience <= 0:
                out.stopped = "early_stopping"
        if out.stopped == "completed" and steps < horizon:
            # the next steps take as long as this epoch's did, its validation included
            fit(steps, (clock() - epoch_started) / plan.steps_per_epoch)
            if steps >= horizon:
                out.stopped = "time_budget"
        if out.stopped != "completed":
            bar.write(f"stopped after epoch {epoch}: {out.stopped.replace('_', ' ')}")
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    out.seconds = clock() - started
    out.fitted_steps = horizon
    return out
