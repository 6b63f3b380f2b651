"""Numbers in the hand-written docs come from a generated report that the page links to.

The rule, kept simple on purpose:

- **Pages**: ``docs/*.md``, except ``configuration.md`` (generated from the settings).
  Generated reports are the files under ``docs/benchmarks/`` and ``docs/upstream/*.json``
  and ``adapters/<name>/<version>/report.md``.
- **A measured number** is a number in prose (fenced code and inline code are left out)
  followed by a unit of measurement: ``ms``, ``µs``/``us``, ``s``/``seconds``, ``minutes``,
  ``req/s``/``requests/s``, ``tok/s``/``tokens/s``, ``%``, or ``×``/``x``/``times``.
- **It passes** if a number printed in a report the page links to (a link to one file of
  a report's folder counts for the whole folder: its ``.md`` and ``.json``) has exactly
  its value, as is or converted for the unit (x100 for a percentage printed as a ratio,
  x1000 for milliseconds printed as seconds and /1000 the other way, /60 for minutes
  printed as seconds): the page quotes
  the report's own digits, it does not round them. Whole numbers in ``.json`` reports
  do not count (there they are mostly counts and parameters; a measurement there has
  decimals), whole numbers in ``.md`` reports do. Or it passes if the page's
  ``ALLOWED`` entry lists it: defaults, limits, settings and example values, which are
  not measurements.

A page that quotes a measurement must therefore link to the report that produced it,
and a number that no linked report holds fails here until it is linked or removed.
"""

from __future__ import annotations

import math
import re
from functools import cache
from pathlib import Path

import pytest

from gateway.config import REPO_ROOT

DOCS = REPO_ROOT / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if p.name != "configuration.md")
UNIT = r"(?:ms|µs|us|seconds|s|minutes|req/s|requests/s|tok/s|tokens/s|%|×|x|times)"
QUOTED = re.compile(r"(?<![\w.@/\-:=])(\d+(?:,\d{3})*(?:\.\d+)?)\s?(" + UNIT + r")(?![\w/])")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
LINK = re.compile(r"\]\(([^)#\s]+)")
# unit -> factors from a report's number to the page's: a ratio printed as a percentage,
# seconds quoted in milliseconds (and back), seconds quoted in minutes
CONVERSIONS = {"%": (1, 100), "ms": (1, 1000), "s": (1, 0.001), "µs": (1, 1000, 1e6),
               "minutes": (1, 1 / 60)}  # fmt: skip

# page -> {"<number> <unit>": why it is not a measurement}
ALLOWED: dict[str, dict[str, str]] = {
    "adapters.md": {
        "5 %": "example escalation share in a policy",
        "3 %": "the validation split a shipped adapter was trained with (a setting)",
    },
    "api.md": {"5 s": "a documented timeout"},
    "benchmarks.md": {
        "77 minutes": "how long a benchmark command runs: a guide, not a result",
        "40 minutes": "how long a benchmark command runs: a guide, not a result",
        "17 minutes": "how long a benchmark command runs: a guide, not a result",
        "20 minutes": "how long a benchmark command runs: a guide, not a result",
        "1.5 ×": "a goal",
        "25 %": "the canary weight the replica test sets",
        "2 req/s": "the open-loop cell's arrival rate, a parameter",
    },
    "console.md": {"3 s": "refresh period", "30 s": "refresh period"},
    "fine-tuning.md": {
        "1 s": "default of finetune_resume_after_idle_s",
        "10 s": "the period of finetune_min_share",
        "30 s": "the idle window the benchmark leaves (a parameter)",
    },
    "metrics-and-deploy.md": {
        "1 ms": "a histogram bucket bound",
        "120 s": "an alert window",
        "10 s": "scrape interval",
        "5 %": "an alert threshold",
    },
    "robustness.md": {
        "120 s": "a timeout setting",
        "30 s": "a timeout setting",
        "5 s": "a timeout setting",
        "2 s": "a timeout setting",
    },
    "scaling.md": {"30 s": "default of state_resync_s", "25 %": "the canary weight tested"},
    "tenancy.md": {"120 s": "a timeout setting"},
    "training.md": {"20 %": "the validation split setting", "3 %": "a data-check threshold"},
}


def prose(text: str) -> str:
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def unit_of(raw: str) -> str:
    names = {"seconds": "s", "us": "µs", "x": "×", "times": "×", "requests/s": "req/s",
             "tokens/s": "tok/s"}  # fmt: skip
    return names.get(raw, raw)


def quoted(page: Path) -> list[tuple[str, str]]:
    """(number as written, unit) of every measured number in the page's prose. Seconds
    need the space (``5 s``): ``401s`` is a plural of the HTTP status."""
    found = QUOTED.finditer(prose(page.read_text()))
    return [(m[1], unit_of(m[2])) for m in found if not (m[2] == "s" and m[0][-2] != " ")]


def linked_reports(page: Path) -> list[Path]:
    """Report files the page links to, each with the rest of its report folder."""
    found: set[Path] = set()
    for target in LINK.findall(page.read_text()):
        path = (page.parent / target).resolve()
        if not path.exists() or not is_report(path):
            continue
        folder = path if path.is_dir() else path.parent
        found.update(p for p in folder.iterdir() if p.suffix in (".md", ".json"))
    return sorted(found)


def is_report(path: Path) -> bool:
    relative = path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else ""
    return (
        relative.startswith("docs/benchmarks/")
        or (relative.startswith("docs/upstream/") and relative.endswith(".json"))
        or re.fullmatch(r"adapters/[^/]+/[^/]+/report\.md", relative) is not None
    )


@cache
def numbers_in(report: Path) -> frozenset[float]:
    """The numbers a report prints (a JSON report's whole numbers left out)."""
    tokens = NUMBER.findall(report.read_text(errors="replace"))
    if report.suffix == ".json":
        tokens = [t for t in tokens if "." in t or "e" in t.lower()]
    return frozenset(float(t) for t in tokens)


def backed(written: str, unit: str, reports: list[Path]) -> bool:
    value = float(written.replace(",", ""))
    return any(
        math.isclose(number * factor, value, rel_tol=1e-9, abs_tol=1e-12)
        for report in reports
        for number in numbers_in(report)
        for factor in CONVERSIONS.get(unit, (1,))
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_measured_number_is_in_a_linked_report(page: Path) -> None:
    allowed = ALLOWED.get(page.name, {})
    reports = linked_reports(page)
    unbacked = [
        f"{number} {unit}"
        for number, unit in quoted(page)
        if f"{number} {unit}" not in allowed and not backed(number, unit, reports)
    ]
    assert unbacked == [], (
        f"docs/{page.name} quotes {unbacked}, found in no report it links to "
        f"({[r.relative_to(REPO_ROOT).as_posix() for r in reports]}): link the report that "
        "measured it, remove the number, or (a default or limit, not a measurement) "
        "list it in ALLOWED with why"
    )


def test_every_allowed_number_is_on_its_page() -> None:
    """An entry whose number left the page goes too, so the list stays short and true."""
    for name, allowed in ALLOWED.items():
        on_page = {f"{number} {unit}" for number, unit in quoted(DOCS / name)}
        assert set(allowed) <= on_page, (name, set(allowed) - on_page)


def test_the_rule_catches_an_unbacked_number(tmp_path: Path) -> None:
    page = DOCS / "scaling.md"
    reports = linked_reports(page)
    assert any(r.name == "perf.json" for r in reports)
    assert backed("52.1", "ms", reports)  # promote_load p50 in perf.json
    assert not backed("52", "ms", reports) and not backed("20", "ms", reports)
    fake = tmp_path / "page.md"
    fake.write_text(
        "A load takes ~20.5 ms, `12 ms` in code, 3 x faster, 429s, 2 s.\n```\n9 s\n```\n"
    )
    assert quoted(fake) == [("20.5", "ms"), ("3", "×"), ("2", "s")]
