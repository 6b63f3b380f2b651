"""A benchmark's ``report.md`` and ``chart.png`` from its results, at the end of a run and
for ``--report-only``, which regenerates them from the saved ``results.json`` after the
report code changed, without running anything again."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.cli.inputs import require_file

Markdown = Callable[[dict[str, Any]], str]
Chart = Callable[[dict[str, Any], Path], None]  # (results, PNG path)


def write_report(results: dict[str, Any], folder: Path, markdown: Markdown, chart: Chart) -> None:
    (folder / "report.md").write_text(markdown(results))
    chart(results, folder / "chart.png")


def rewrite_report(folder: Path, markdown: Markdown, chart: Chart) -> int:
    """The report of ``folder/results.json``, written into ``folder``; exit status 0."""
    saved = folder / "results.json"
    require_file(saved, "--report-only: results file")
    write_report(json.loads(saved.read_text()), folder, markdown, chart)
    print(f"wrote {folder / 'report.md'} and chart.png")
    return 0
