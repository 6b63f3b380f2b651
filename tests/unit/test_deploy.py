"""The files in deploy/ are checked by the tools that will read them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary is not None, "promtool is missing: scripts/test.sh installs Debian's prometheus"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, check=False)


def test_prometheus_files_pass_promtool(tmp_path: Path) -> None:
    """promtool also checks that the credentials file exists: where Prometheus runs, the
    metrics key lies next to the config, as compose and the integration test put it."""
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(DEPLOY / "prometheus" / name, tmp_path / name)
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["authorization"]["type"] == "Bearer"
    key_file = tmp_path / job["authorization"]["credentials_file"]
    missing = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert missing.returncode != 0 and "credentials" in missing.stdout + missing.stderr
    key_file.parent.mkdir(parents=True)
    key_file.write_text("a-metrics-key-0123456789abcdef\n")
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        done = promtool(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr


def exported_names() -> set[str]:
    """Every sample name the gateway can export (counters as *_total, histograms as
    *_bucket/_count/_sum), read from the metrics registry itself."""
    from gateway.observability.metrics import GatewayMetrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                "info": ("_info",), "gauge": ("",)}  # fmt: skip
    from gateway.cli.connections import ConnectionGuard, ConnectionLimits

    guard = ConnectionGuard(ConnectionLimits(1, 1, 1.0, 1.0))  # the listeners' own series
    return {
        family.name + suffix
        for registry in (GatewayMetrics().registry, guard.registry)
        for family in registry.collect()
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
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in re.findall(r"\bgateway_[a-z_]+", e)}
    assert used and used <= exported_names(), used - exported_names()


def _k8s_documents() -> list[tuple[str, dict]]:
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
        if doc["kind"] in CRD_SHAPES:  # custom resources: their APIs' required shapes
            jsonschema.validate(doc, CRD_SHAPES[doc["kind"]])
            continue
        kubernetes_validate.validate(doc, version, strict=True)  # raises with the reason
    assert kinds >= {"Deployment", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim",
                     "ServiceMonitor", "InferencePool", "HTTPRoute"}  # fmt: skip
    deployment = next(d for _, d in _k8s_documents() if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    broken = copy.deepcopy(deployment)  # the validator really checks: a typo is refused
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_the_cpu_image_has_no_compiler_and_runs_on_a_read_only_root() -> None:
    """The LoRA kernel is compiled in the build stage (setup.py, copied there) and the
    runtime stage installs no compiler; the pod's root is read-only and what must be
    written (/tmp, the image user's home with its caches) is an emptyDir."""
    dockerfile = (DEPLOY / "docker" / "Dockerfile.cpu").read_text()
    build, runtime = dockerfile.rsplit("\nFROM ", 1)
    assert re.search(r"^COPY .*\bsetup\.py\b", build, re.MULTILINE)
    assert "kernel.describe().startswith('shipped-')" in build  # the image build checks it
    installed = " ".join(re.findall(r"apt-get install ([^&]*)", runtime))
    assert installed and not re.search(r"\b(gcc|g\+\+|clang|cc|build-essential)\b", installed)
    home = re.search(r"--home-dir (\S+)", runtime)
    assert home is not None
    deployment = next(d for _, d in _k8s_documents() if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    scratch = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    for path in ("/tmp", home.group(1)):
        assert mounted.get(path) in scratch, f"{path} must be a writable emptyDir"


def test_kubernetes_config_is_a_valid_gateway_config(tmp_path, monkeypatch) -> None:
    """The ConfigMap's settings and tenants load with the gateway's own parsers."""
    from gateway.config import Settings
    from gateway.tenancy import TenantDirectory

    configmap = next(d for _, d in _k8s_documents() if d["kind"] == "ConfigMap")
    (tmp_path / "gateway.yaml").write_text(configmap["data"]["gateway.yaml"])
    (tmp_path / "tenants.yaml").write_text(configmap["data"]["tenants.yaml"])
    monkeypatch.setenv("GATEWAY_CONFIG", str(tmp_path / "gateway.yaml"))
    settings = Settings(tenants_file=tmp_path / "tenants.yaml")
    assert settings.auth_mode == "tenants" and settings.host == "0.0.0.0"
    assert TenantDirectory.load(settings.tenants_file, None).get("example") is not None
    placeholders = {k: v for _, d in _k8s_documents() if d["kind"] == "Secret"
                    for k, v in d["stringData"].items()}  # fmt: skip
    for field in ("admin_key", "metrics_key"):  # the placeholders are refused
        with pytest.raises(ValueError, match=field):
            Settings(tenants_file=tmp_path / "tenants.yaml",
                     **{field: placeholders[field.replace("_", "-")]})  # fmt: skip
    assert yaml.safe_load(configmap["data"]["gateway.yaml"])["adapters"]


def test_kubernetes_prometheus_sends_the_key_the_gateway_requires() -> None:
    """The ServiceMonitor's bearer token and the gateway's GATEWAY_METRICS_KEY are the same
    Secret key, and that Secret holds nothing else (Prometheus may read it)."""
    docs = [d for _, d in _k8s_documents()]
    [endpoint] = next(d for d in docs if d["kind"] == "ServiceMonitor")["spec"]["endpoints"]
    auth = endpoint["authorization"]
    assert auth["type"] == "Bearer"
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GATEWAY_METRICS_KEY"]["valueFrom"]["secretKeyRef"] == auth["credentials"]
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    assert set(secrets[auth["credentials"]["name"]]["stringData"]) == {auth["credentials"]["key"]}


def test_compose_wires_gateway_prometheus_and_grafana() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert set(compose["services"]) == {"metrics-key", "gateway", "prometheus", "grafana"}
    for service in compose["services"].values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port  # open mode stays on loopback
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
    build = compose["services"]["gateway"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()


def test_compose_gives_gateway_and_prometheus_the_same_metrics_key() -> None:
    """One key file in one volume: the gateway exports it as GATEWAY_METRICS_KEY (then runs
    the image's own command), and Prometheus finds it where its config says."""
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]

    def mounts(service: str) -> dict[str, str]:
        pairs = (v.split(":")[:2] for v in services[service]["volumes"])
        return {target: source for source, target in pairs}

    key_dir = next(t for t, s in mounts("metrics-key").items() if s == "metrics-key")
    assert f"{key_dir}/metrics-key" in " ".join(services["metrics-key"]["command"])
    gateway_dir = next(t for t, s in mounts("gateway").items() if s == "metrics-key")
    command = services["gateway"]["command"][-1]
    assert f'GATEWAY_METRICS_KEY="$$(cat {gateway_dir}/metrics-key)"' in command
    dockerfile = (DEPLOY / "docker" / "Dockerfile.cpu").read_text()
    image_command = re.search(r'CMD \["sh", "-c", "(.*)"\]', dockerfile)
    assert image_command and command.endswith(image_command[1])
    config_dir = Path(next(t for t in mounts("prometheus") if t.endswith("/prometheus.yml"))).parent
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    key_file = config_dir / scrape["scrape_configs"][0]["authorization"]["credentials_file"]
    assert mounts("prometheus")[str(key_file.parent)] == "metrics-key"


# The operator's SafeAuthorization: a type and a key of a Secret in the monitor's namespace.
AUTHORIZATION = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "type": {"type": "string"},
        "credentials": {
            "type": "object",
            "required": ["key"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "key": {"type": "string"},
                "optional": {"type": "boolean"},
            },
        },
    },
}
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
                    "items": {
                        "type": "object",
                        "required": ["port", "path"],
                        "properties": {"authorization": AUTHORIZATION},
                    },
                },
            },
        },
    },
}


def test_the_inference_pool_selects_the_gateway_pods_and_the_route_targets_it() -> None:
    """The llm-d example points where the Deployment really is: the pool's selector matches
    the pods' labels, its port is the container's, and the HTTPRoute's backend is the pool."""
    docs = {d["kind"]: d for _, d in _k8s_documents()}
    pool, route, deployment = docs["InferencePool"], docs["HTTPRoute"], docs["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pool["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["containerPort"] for p in container["ports"]}
    assert {p["number"] for p in pool["spec"]["targetPorts"]} <= ports
    backends = [b for rule in route["spec"]["rules"] for b in rule["backendRefs"]]
    assert backends == [{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                         "name": pool["metadata"]["name"]}]  # fmt: skip


INFERENCE_POOL = {  # inference.networking.k8s.io/v1, the fields its CRD requires
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "inference.networking.k8s.io/v1"},
        "spec": {
            "type": "object",
            "required": ["selector", "targetPorts", "endpointPickerRef"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object", "required": ["matchLabels"],
                    "properties": {"matchLabels": {
                        "type": "object", "minProperties": 1,
                        "additionalProperties": {"type": "string"}}},
                },
                "targetPorts": {
                    "type": "array", "minItems": 1, "maxItems": 8,
                    "items": {"type": "object", "required": ["number"],
                              "additionalProperties": False,
                              "properties": {"number": {"type": "integer", "minimum": 1,
                                                        "maximum": 65535}}},
                },
                "appProtocol": {"enum": ["http", "kubernetes.io/h2c"]},
                "endpointPickerRef": {
                    "type": "object", "required": ["name", "port"],
                    "additionalProperties": False,
                    "properties": {
                        "group": {"type": "string"}, "kind": {"type": "string"},
                        "name": {"type": "string", "minLength": 1},
                        "port": {"type": "object", "required": ["number"],
                                 "properties": {"number": {"type": "integer"}}},
                        "failureMode": {"enum": ["FailOpen", "FailClose"]},
                    },
                },
            },
        },
    },
}  # fmt: skip
HTTP_ROUTE = {  # gateway.networking.k8s.io/v1
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
        "spec": {
            "type": "object",
            "required": ["parentRefs", "rules"],
            "properties": {
                "parentRefs": {"type": "array", "minItems": 1,
                               "items": {"type": "object", "required": ["name"]}},
                "rules": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["backendRefs"],
                    "properties": {"backendRefs": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["name"],
                        "properties": {"port": {"type": "integer"}}}}},
                }},
            },
        },
    },
}  # fmt: skip
CRD_SHAPES = {"ServiceMonitor": SERVICE_MONITOR, "InferencePool": INFERENCE_POOL,
              "HTTPRoute": HTTP_ROUTE}  # fmt: skip
