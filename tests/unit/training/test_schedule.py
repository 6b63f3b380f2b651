"""Epochs, batch size and warm-up from the data's size; the learning-rate curve."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.training.config import TrainConfig
from gateway.training.schedule import Plan, lr_factor, plan


def _cfg(**extra: object) -> TrainConfig:
    return TrainConfig(name="x", data=Path("rows.csv"), **extra)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (9504, Plan(batch_size=32, epochs=3, steps_per_epoch=297, warmup_steps=27)),  # BANKING77
        (192, Plan(batch_size=9, epochs=30, steps_per_epoch=22, warmup_steps=20)),  # demo
        (10, Plan(batch_size=1, epochs=30, steps_per_epoch=10, warmup_steps=9)),
    ],
)
def test_auto_plan_follows_the_data_size(rows: int, expected: Plan) -> None:
    assert plan(_cfg(), rows) == expected


def test_numbers_in_the_config_are_kept() -> None:
    got = plan(_cfg(epochs=2, batch_size=8, warmup_steps=5, grad_accum=2), 100)
    assert got == Plan(batch_size=8, epochs=2, steps_per_epoch=7, warmup_steps=5)
    assert got.total_steps == 14
    assert plan(_cfg(epochs=4, warmup_share=0.5), 9504).warmup_steps == round(0.5 * 4 * 297)


def test_learning_rate_warms_up_then_decays() -> None:
    assert lr_factor(0, 4, 100, "cosine") == 0.25
    assert lr_factor(3, 4, 100, "cosine") == 1.0
    assert lr_factor(4, 4, 100, "cosine") == pytest.approx(1.0)
    assert lr_factor(52, 4, 100, "cosine") == pytest.approx(0.55)
    assert lr_factor(100, 4, 100, "cosine") == pytest.approx(0.1)
    assert lr_factor(100, 4, 100, "constant") == 1.0
