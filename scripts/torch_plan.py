"""Is this torch the CPU build? Read from pip's resolved plan, never from a guess.

``scripts/setup.sh`` asks pip what ``torch==X`` resolves to with the configured indexes
(``pip install --dry-run --no-deps --ignore-installed --report -``) and pipes the report
here. The wheel is the CPU build when its version carries ``+cpu``, or when, on this
platform (the report's own marker environment), it requires no GPU runtime (``nvidia-*``,
``cuda-*``, ``triton``). Only otherwise does setup fetch torch from PyPI's CPU wheel index.
``--installed`` judges the torch already in the running environment the same way.

Prints one line: ``cpu VERSION`` or ``gpu VERSION (why)``. Runs with the standard library
and pip's vendored ``packaging``, before anything else is installed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
except ImportError:  # a bare venv: pip always carries its own copy
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement

GPU_RUNTIMES = ("nvidia-", "cuda-", "triton")


def gpu_requirements(requires: list[str], environment: dict[str, str]) -> list[str]:
    """The GPU runtime packages among ``requires`` that apply on ``environment``."""
    found = []
    for line in requires:
        req = Requirement(line)
        applies = req.marker is None or req.marker.evaluate({**environment, "extra": ""})
        if applies and req.name.lower().startswith(GPU_RUNTIMES):
            found.append(req.name)
    return found


def judge(version: str, requires: list[str], environment: dict[str, str]) -> str:
    local = version.partition("+")[2]
    if local == "cpu":
        return f"cpu {version}"
    if local.startswith(("cu", "rocm")):
        return f"gpu {version} (a {local} build)"
    if gpu := gpu_requirements(requires, environment):
        return f"gpu {version} (requires {', '.join(gpu[:3])}{', ...' if len(gpu) > 3 else ''})"
    return f"cpu {version}"


def judge_report(report: dict[str, Any]) -> str:
    """The verdict on the torch wheel in a ``pip install --report`` plan."""
    for item in report.get("install", []):
        meta = item["metadata"]
        if meta["name"].lower() == "torch":
            environment = report.get("environment") or default_environment()
            return judge(meta["version"], meta.get("requires_dist") or [], environment)
    raise SystemExit("torch_plan: the report installs no torch")


def judge_installed() -> str:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("torch")
    except PackageNotFoundError:
        return "none"
    return judge(dist.version, dist.requires or [], default_environment())


def main(argv: list[str]) -> int:
    print(judge_installed() if argv[1:] == ["--installed"] else judge_report(json.load(sys.stdin)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
