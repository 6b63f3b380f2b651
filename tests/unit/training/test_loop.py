"""How a run stops, and which weights it keeps: a one-parameter model and scripted
validation losses stand in for the network."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from gateway.training.answers import Validation
from gateway.training.config import TrainConfig
from gateway.training.loop import run_epochs
from gateway.training.schedule import Plan

ROWS = [([1, 2, 3], 0), ([1, 2, 4], 1), ([1, 2, 5], 0), ([1, 2, 6], 1)]


class Weight(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lora_w = torch.nn.Parameter(torch.tensor([3.0]))


class Scripted:
    """Loss ``w**2`` (each step moves w); validation losses read from a script, with the
    weight each validation saw."""

    def __init__(self, val_losses: list[float]) -> None:
        self.val_losses = iter(val_losses)
        self.seen: list[float] = []

    def loss(self, model: Weight, rows: list, chunk: list[int], pad: int, share: bool):
        return (model.lora_w**2).sum(), 3 * len(chunk)

    def validate(self, model: Weight, rows: list, size: int, pad: int, share: bool):
        self.seen.append(float(model.lora_w.detach()))
        return Validation(next(self.val_losses), [[0.0, 0.0]] * len(rows))


class StepClock:
    """Time that passes only with training steps: ``seconds`` per loss computed."""

    def __init__(self, answer: Scripted, seconds: float) -> None:
        self.now, self.seconds, loss = 0.0, seconds, answer.loss

        def timed(*args: object):
            self.now += self.seconds
            return loss(*args)  # type: ignore[arg-type]

        answer.loss = timed  # type: ignore[method-assign]

    def __call__(self) -> float:
        return self.now


def _run(
    answer: Scripted, epochs: int, rows: list = ROWS, clock: StepClock | None = None,
    **extra: object,
) -> tuple[Weight, object]:  # fmt: skip
    cfg = TrainConfig(name="x", data=Path("rows.csv"), learning_rate=0.1, **extra)
    model = Weight()
    plan = Plan(batch_size=2, epochs=epochs, steps_per_epoch=len(rows) // 2, warmup_steps=0)
    outcome = run_epochs(
        model, answer, lambda epoch: rows, ROWS[:2], cfg, plan, 0, nullcontext,  # type: ignore[arg-type]
        **({"clock": clock} if clock else {}),
    )  # fmt: skip
    return model, outcome


def test_early_stopping_keeps_the_best_epoch() -> None:
    answer = Scripted([0.5, 0.4, 0.6, 0.7, 0.1])
    model, outcome = _run(answer, epochs=5, early_stopping_patience=2)
    assert outcome.stopped == "early_stopping"
    assert [h["val_loss"] for h in outcome.history] == [0.5, 0.4, 0.6, 0.7]
    assert outcome.best.nll == 0.4
    assert float(model.lora_w.detach()) == answer.seen[1] != answer.seen[-1]  # epoch 2 weight
    assert (outcome.examples, outcome.tokens) == (16, 48)


def test_every_planned_epoch_runs_while_validation_improves() -> None:
    _, outcome = _run(Scripted([0.5, 0.4, 0.3]), epochs=3)
    assert outcome.stopped == "completed" and outcome.metrics()["epochs_run"] == 3


def test_the_time_budget_ends_the_epoch_and_keeps_the_best_weights() -> None:
    answer = Scripted([0.5])
    model, outcome = _run(answer, epochs=3, max_train_minutes=1e-9)  # over after one step
    assert outcome.stopped == "time_budget"
    assert len(outcome.history) == 1 and outcome.examples == 2  # one batch of two
    assert float(model.lora_w.detach()) == answer.seen[0] != 3.0


def test_steps_that_cannot_fit_are_cut_from_the_plan_after_an_epoch() -> None:
    answer = Scripted([0.5, 0.4, 0.3, 0.2])
    clock = StepClock(answer, seconds=10)  # 20 s per epoch of two steps
    _, outcome = _run(answer, epochs=4, clock=clock, max_train_minutes=50 / 60)
    # after epoch 1 (20 s), 30 s are left: three more steps fit, the last one alone in
    # epoch 3; the schedule ends with them
    assert (outcome.planned_steps, outcome.fitted_steps) == (8, 5)
    assert outcome.stopped == "completed" and len(outcome.history) == 3
    assert clock() == 50 and outcome.examples == 10


def test_the_pace_of_the_first_steps_fits_the_plan_before_an_epoch_ends() -> None:
    answer = Scripted([0.5, 0.4, 0.3])
    rows = ROWS * 15  # 30 steps an epoch: the pace is read after PACE_STEPS of them
    clock = StepClock(answer, seconds=1)
    _, outcome = _run(answer, epochs=3, rows=rows, clock=clock, max_train_minutes=70 / 60)
    # 1 s a step plus a share for validation: 49 more steps fit after the first 20
    assert (outcome.planned_steps, outcome.fitted_steps) == (90, 69)
    assert outcome.stopped == "completed" and len(outcome.history) == 3
    assert outcome.metrics()["fitted_steps"] == 69 and clock() == 69


def test_a_plan_that_fits_is_left_alone() -> None:
    answer = Scripted([0.5, 0.4, 0.3])
    _, outcome = _run(answer, epochs=3, clock=StepClock(answer, seconds=1))
    assert (outcome.planned_steps, outcome.fitted_steps) == (6, 6)
