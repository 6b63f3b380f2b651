"""Report provenance: the steal share from /proc/stat readings, and the commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway_tools.bench.provenance import CpuTimes, describe, revision, share_from


def _stat(tmp_path: Path, user: int, idle: int, steal: int) -> Path:
    path = tmp_path / f"stat-{user}-{idle}-{steal}"
    # cpu user nice system idle iowait irq softirq steal guest guest_nice
    path.write_text(f"cpu  {user} 0 10 {idle} 5 1 2 {steal} 0 0\ncpu0 1 2 3\n")
    return path


def test_shares_split_the_interval_into_busy_idle_and_stolen(tmp_path: Path) -> None:
    before = CpuTimes.read(_stat(tmp_path, 100, 1000, 50))
    after = CpuTimes.read(_stat(tmp_path, 400, 1300, 450))
    assert before and after
    share = after.share_since(before)
    # busy 300, idle 300, steal 400 ticks of 1,000
    assert share == {"busy": 0.3, "idle": 0.3, "steal": 0.4}


def test_unreadable_or_foreign_stat_gives_none(tmp_path: Path) -> None:
    assert CpuTimes.read(tmp_path / "missing") is None
    odd = tmp_path / "odd"
    odd.write_text("intr 1 2 3\n")
    assert CpuTimes.read(odd) is None
    same = CpuTimes(1, 2, 3)
    assert same.share_since(same) is None
    assert share_from(None) is None  # no first reading, no share


def test_the_report_line_names_the_steal_share_and_the_commit() -> None:
    line = describe({
        "cpus": 2,
        "cpu_share": {"busy": 0.5, "idle": 0.1, "steal": 0.4},
        "revision": {"commit": "0123456789abcdef", "dirty": True},
    })  # fmt: skip
    assert "2 CPUs" in line and "40% stolen" in line
    assert "0123456789ab with local changes" in line
    assert describe({"cpus": 2}) == "Machine: 2 CPUs."  # reports from before these fields


def test_revision_reads_the_commit_and_sees_changes(tmp_path: Path) -> None:
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    try:
        subprocess.run([*git, "init", "-q"], check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not installed")
    (tmp_path / "f").write_text("a")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip
    assert revision(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "f").write_text("b")
    assert revision(tmp_path) == {"commit": head, "dirty": True}
    assert revision(tmp_path / "not-a-repo") is None
