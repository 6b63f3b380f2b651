"""What a run sends, fixed before anything starts: blocks of requests in rounds.

Each round has one latency block at concurrency 1 that alternates the versions request
by request, then one throughput block per version. The version order rotates from round
to round (v2 v3, then v3 v2), so neither version always runs first after the other, and
a slow minute of the machine falls on every version alike.
"""

from __future__ import annotations

from dataclasses import dataclass

LATENCY_CELL = "c1"


@dataclass(frozen=True)
class Plan:
    versions: tuple[str, ...]  # the first is the reference: ratios are over it
    latency_requests: int  # per version, at concurrency 1
    concurrency: int  # of the throughput blocks
    throughput_requests: int  # per version, at ``concurrency``
    rounds: int
    seed: int

    @property
    def throughput_cell(self) -> str:
        return f"c{self.concurrency}"

    @property
    def cells(self) -> tuple[str, str]:
        return LATENCY_CELL, self.throughput_cell


@dataclass(frozen=True)
class Block:
    """Requests sent as one closed loop: request ``i`` asks ``versions[i % len(versions)]``
    to classify text number ``items[i]``."""

    round: int
    concurrency: int
    versions: tuple[str, ...]
    items: tuple[int, ...]

    @property
    def cell(self) -> str:
        return f"c{self.concurrency}"

    def request(self, i: int) -> tuple[str, int]:
        return self.versions[i % len(self.versions)], self.items[i]

    def by_version(self) -> dict[str, list[int]]:
        """The request indices of each version, in sending order."""
        out: dict[str, list[int]] = {version: [] for version in self.versions}
        for i in range(len(self.items)):
            out[self.request(i)[0]].append(i)
        return out


def split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` shares that differ by at most one, the larger ones first."""
    share, extra = divmod(total, parts)
    return [share + (i < extra) for i in range(parts)]


def rotated(versions: tuple[str, ...], turn: int) -> tuple[str, ...]:
    shift = turn % len(versions)
    return versions[shift:] + versions[:shift]


def schedule(plan: Plan, num_texts: int) -> list[Block]:
    """Every block of the run in sending order. Each version gets the same texts in the
    same order in each cell: text ``k`` of a cell is number ``k % num_texts``."""
    blocks = []
    latency_done = throughput_done = 0
    shares = zip(
        split(plan.latency_requests, plan.rounds),
        split(plan.throughput_requests, plan.rounds),
        strict=True,
    )
    for turn, (latency, throughput) in enumerate(shares):
        order = rotated(plan.versions, turn)
        if latency:
            texts = [(latency_done + k) % num_texts for k in range(latency)]
            blocks.append(Block(turn, 1, order, tuple(t for t in texts for _ in order)))
        if throughput:
            texts = [(throughput_done + k) % num_texts for k in range(throughput)]
            blocks += [Block(turn, plan.concurrency, (v,), tuple(texts)) for v in order]
        latency_done += latency
        throughput_done += throughput
    return blocks
