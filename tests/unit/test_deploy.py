"""The files in deploy/ are checked by the tools that will read them."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from gateway.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"


@pytest.mark.parametrize(
    "args",
    [["check", "config", "prometheus/prometheus.yml"], ["check", "rules", "prometheus/alerts.yml"]],
)
def test_prometheus_files_pass_promtool(args: list[str]) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: scripts/test.sh installs Debian's prometheus"
    done = subprocess.run(
        [promtool, *args], cwd=DEPLOY, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def exported_names() -> set[str]:
    """Every sample name the gateway can export (counters as *_total, histograms as
    *_bucket/_count/_sum), read from the metrics registry itself."""
    from gateway.observability.metrics import GatewayMetrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                "info": ("_info",), "gauge": ("",)}  # fmt: skip
    return {
        family.name + suffix
        for family in GatewayMetrics().registry.collect()
        for suffix in suffixes[family.type]
    }


def _exprs(value: object) -> list[str]:
    if isinstance(value, dict):
        found = [value["expr"]] if isinstance(value.get("expr"), str) else []
        return found + [e for v in value.values() for e in _exprs(v)]
    if isinstance(value, list):
        return [e for v in value for e in _exprs(v)]
    return []


def test_grafana_dashboard_is_importable_and_queries_real_metrics() -> None:
    import json
    import re

    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["type"] in {"row", "timeseries", "stat"}
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["refId"] and t["expr"] for t in panel["targets"])
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "tenant", "adapter"}
    names = exported_names()
    used = {m for e in _exprs(dashboard) for m in re.findall(r"\bgateway_[a-z_]+", e)}
    assert used and used <= names, used - names
    titles = " ".join(p["title"].lower() for p in panels)
    for must in ("tenant", "adapter", "error", "rate-limit", "resident", "p95"):
        assert must in titles, must


def test_alert_rules_query_real_metrics() -> None:
    import re

    import yaml

    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in re.findall(r"\bgateway_[a-z_]+", e)}
    assert used and used <= exported_names(), used - exported_names()
