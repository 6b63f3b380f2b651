"""``gateway bench lora-ops`` runs and writes what it printed (tiny sizes: seconds)."""

from __future__ import annotations

import json
from pathlib import Path

from gateway_tools.cli import build_parser


def test_the_lora_ops_bench_times_every_path_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "lora-ops.json"
    args = build_parser().parse_args([
        "bench", "lora-ops", "--out", str(out), "--tokens", "4", "80", "--adapters", "1", "3",
        "--repeats", "3", "--slots", "4",
    ])  # fmt: skip
    assert args.func(args) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert len(rows) == 3 * 2 * 2  # shapes x token counts x adapter mixes
    for row in rows:
        assert all(row[k] > 0 for k in ("vllm_us", "grouped_us", "fused_us", "base_linear_us"))
    assert {(r["tokens"], r["adapters"]) for r in rows} == {(4, 1), (4, 3), (80, 1), (80, 3)}
