"""How long to train and at what learning rate, decided from the data's size alone.

A data set never seen before gets sensible numbers without tuning: about ``AUTO_STEPS``
optimizer steps in all (more epochs for small sets, at least ``AUTO_EPOCHS[0]``), with
early stopping on validation NLL to end the ones that need fewer, and batches small
enough that every epoch has ``MIN_STEPS_PER_EPOCH`` steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.training.config import TrainConfig

AUTO_BATCH_SIZE = 32
MIN_STEPS_PER_EPOCH = 20
AUTO_STEPS = 900
AUTO_EPOCHS = (3, 30)


@dataclass(frozen=True)
class Plan:
    batch_size: int
    epochs: int
    steps_per_epoch: int
    warmup_steps: int

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs


def plan(cfg: TrainConfig, num_train: int) -> Plan:
    """``epochs``/``batch_size`` "auto" resolved for ``num_train`` rows; numbers given in
    the config are kept as they are."""
    batch_size = (
        min(AUTO_BATCH_SIZE, max(1, num_train // (MIN_STEPS_PER_EPOCH * cfg.grad_accum)))
        if cfg.batch_size == "auto"
        else cfg.batch_size
    )
    steps_per_epoch = max(1, math.ceil(num_train / batch_size / cfg.grad_accum))
    low, high = AUTO_EPOCHS
    epochs = (
        min(high, max(low, round(AUTO_STEPS / steps_per_epoch)))
        if cfg.epochs == "auto"
        else cfg.epochs
    )
    warmup = (
        cfg.warmup_steps
        if cfg.warmup_steps is not None
        else round(cfg.warmup_share * steps_per_epoch * epochs)
    )
    return Plan(batch_size, epochs, steps_per_epoch, warmup)


def lr_factor(step: int, warmup: int, total: int, kind: str) -> float:
    """Linear warm-up, then constant or cosine decay to a tenth of the peak rate."""
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def steps_that_fit(seconds_left: float, step_seconds: float) -> int:
    """Whole steps of ``step_seconds`` in ``seconds_left`` (none when it is used up)."""
    if seconds_left <= 0:
        return 0
    return int(seconds_left // max(step_seconds, 1e-9))
