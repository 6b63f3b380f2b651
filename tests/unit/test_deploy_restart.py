"""``deploy/`` stops a gateway gracefully and restarts it cleanly after a crash: each
supervisor gives in-flight requests their grace period before it kills, kills whatever a
crashed gateway's unit or container still holds, and starts a fresh one (issue 38; what
happens on each kind of crash is in docs/metrics-and-deploy.md)."""

from __future__ import annotations

import configparser
import re

import yaml

from gateway.config import REPO_ROOT, Settings

DEPLOY = REPO_ROOT / "deploy"
GRACE_S = Settings.model_fields["shutdown_grace_s"].default


def seconds(value: str | int) -> float:
    found = re.fullmatch(r"(\d+)(s?)", str(value))
    assert found, value
    return float(found.group(1))


def test_the_systemd_unit_drains_then_kills_the_whole_group_and_restarts() -> None:
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.read_string((DEPLOY / "systemd" / "lora-gateway.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"].endswith("gateway serve")
    # SIGTERM to the gateway only (it stops its engine after the drain), then SIGKILL to
    # the whole control group; "control-group" would stop the engine under the requests
    assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
    assert seconds(service["TimeoutStopSec"]) > GRACE_S
    # the gateway's exit after engine death is a re-raised SIGTERM: on-failure misses it
    assert service["Restart"] == "always"
    assert service["OOMPolicy"] == "stop"


def test_compose_runs_an_init_and_waits_out_the_grace_period() -> None:
    gateway = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["gateway"]
    assert gateway["init"] is True
    assert seconds(gateway["stop_grace_period"]) > GRACE_S
    assert gateway["restart"] in ("always", "unless-stopped")


def test_kubernetes_waits_out_the_grace_period() -> None:
    deployment = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > GRACE_S
    assert not pod.get("shareProcessNamespace")  # the container's own PID namespace
