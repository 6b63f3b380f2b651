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


def _k8s_documents() -> list[tuple[str, dict]]:
    import yaml

    return [
        (path.name, doc)
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def test_kubernetes_manifests_validate_offline() -> None:
    import copy

    import jsonschema
    import kubernetes_validate

    version = "1.30.0"
    kinds = set()
    for _, doc in _k8s_documents():
        kinds.add(doc["kind"])
        if doc["kind"] == "ServiceMonitor":  # a CRD: the Prometheus Operator's required shape
            jsonschema.validate(doc, SERVICE_MONITOR)
            continue
        kubernetes_validate.validate(doc, version, strict=True)  # raises with the reason
    assert kinds >= {"Deployment", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim",
                     "ServiceMonitor"}  # fmt: skip
    deployment = next(d for _, d in _k8s_documents() if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    broken = copy.deepcopy(deployment)  # the validator really checks: a typo is refused
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_kubernetes_config_is_a_valid_gateway_config(tmp_path, monkeypatch) -> None:
    """The ConfigMap's settings and tenants load with the gateway's own parsers."""
    import yaml

    from gateway.config import Settings
    from gateway.tenancy import TenantDirectory

    configmap = next(d for _, d in _k8s_documents() if d["kind"] == "ConfigMap")
    (tmp_path / "gateway.yaml").write_text(configmap["data"]["gateway.yaml"])
    (tmp_path / "tenants.yaml").write_text(configmap["data"]["tenants.yaml"])
    monkeypatch.setenv("GATEWAY_CONFIG", str(tmp_path / "gateway.yaml"))
    settings = Settings(tenants_file=tmp_path / "tenants.yaml")
    assert settings.auth_mode == "tenants" and settings.host == "0.0.0.0"
    assert TenantDirectory.load(settings.tenants_file, None).get("example") is not None
    secret = next(d for _, d in _k8s_documents() if d["kind"] == "Secret")
    with pytest.raises(ValueError, match="admin_key"):  # the placeholder is refused
        Settings(
            tenants_file=tmp_path / "tenants.yaml", admin_key=secret["stringData"]["admin-key"]
        )
    assert yaml.safe_load(configmap["data"]["gateway.yaml"])["adapters"]


def test_compose_wires_gateway_prometheus_and_grafana() -> None:
    import yaml

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert set(compose["services"]) == {"gateway", "prometheus", "grafana"}
    for service in compose["services"].values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port  # open mode stays on loopback
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
    build = compose["services"]["gateway"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()


SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "required": ["matchLabels"]},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object", "required": ["port", "path"]},
                },
            },
        },
    },
}
