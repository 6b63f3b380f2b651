"""The datasets the benchmarks read, shipped in the repository under ``data/``.

``data/README.md`` gives each one's source, commit, license and citation.
"""

from __future__ import annotations

import csv
from pathlib import Path

from gateway.config import REPO_ROOT

DATA_ROOT = REPO_ROOT / "data"
BANKING77 = DATA_ROOT / "banking77"
JSONSCHEMABENCH = DATA_ROOT / "jsonschemabench"


def shown(path: Path) -> str:
    """``path`` as saved results record it: relative to the repository when inside it, so
    a report names the file a reader's own clone has, not one machine's folders."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(path)


def banking77_texts(limit: int) -> tuple[str, ...]:
    """Every n-th message of BANKING77's test split (grouped by label, so the sample
    spreads over the labels): the same fixed prompts for every run."""
    with (BANKING77 / "test.csv").open(newline="", encoding="utf-8") as handle:
        rows = [row["text"] for row in csv.DictReader(handle)]
    return tuple(rows[:: max(1, len(rows) // limit)][:limit])
