"""The deployment files agree with the settings: every way of running the web process
lets a stop wait for requests still waiting on their images (gunicorn's graceful
timeout at least the sync wait, the supervisor's stop timeout above it), and every way of
running a worker lets its jobs in flight finish.

`make check-deploy` additionally has docker compose and kubectl parse the files."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
SYSTEMD = ROOT / "deploy" / "systemd"


def _setting_default(name: str) -> float:
    source = (ROOT / "imagehub" / "settings.py").read_text()
    match = re.search(rf'env_(?:int|float)\(\s*"{name}",\s*([0-9.]+)', source)
    assert match, f"{name} not found in imagehub/settings.py"
    return float(match.group(1))


SYNC_WAIT = _setting_default("IMAGEHUB_SYNC_WAIT_SECONDS")
JOB_TIME_LIMIT = _setting_default("IMAGEHUB_JOB_TIME_LIMIT")
# --graceful-timeout 330, --graceful-timeout=330, "--graceful-timeout", "330" (JSON form)
GRACEFUL = re.compile(r'--graceful-timeout"?[ =,]\s*"?(\d+)')


def _graceful_timeouts(path: str) -> list[int]:
    """The --graceful-timeout values of the gunicorn commands in a file (not its comments)."""
    text = (ROOT / path).read_text()
    if path == "Makefile":
        default = re.search(r"^GRACEFUL_TIMEOUT \?= (\d+)$", text, re.MULTILINE)[1]
        text = text.replace("$(GRACEFUL_TIMEOUT)", default)
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return [int(value) for value in GRACEFUL.findall(code)]


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name:
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _server(argv: list[str]) -> tuple[str, str | None]:
    """(application, worker class) of a gunicorn command line."""
    start = next(i for i, arg in enumerate(argv) if arg.endswith("gunicorn"))
    return argv[start + 1], _option(argv, "--worker-class")


def _make_web_server() -> tuple[str, str | None]:
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    opts = re.search(r"^GUNICORN_OPTS\s*:?=(.*)$", makefile, re.MULTILINE)[1]
    web = re.search(r"^web:.*\n\t(.*gunicorn.*)$", makefile, re.MULTILINE)[1]
    argv = shlex.split(web.replace("$(GUNICORN_OPTS)", opts))
    return _server(argv)


def _deployed_servers() -> dict[str, tuple[str, str | None]]:
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)[1])
    unit = (ROOT / "deploy/systemd/imagehub-web.service").read_text().replace("\\\n", " ")
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.MULTILINE)[1]
    (container,) = _k8s("web-deployment.yaml")["spec"]["template"]["spec"]["containers"]
    return {
        "Dockerfile (and compose.yaml)": _server(cmd),
        "deploy/systemd/imagehub-web.service": _server(shlex.split(exec_start)),
        "deploy/k8s/web-deployment.yaml": _server(container["command"]),
    }


def test_deployments_serve_the_way_make_web_does():
    # The Makefile's web target is the reference: a change of server (application or
    # worker class) there must reach every deployment file.
    expected = _make_web_server()
    for path, server in _deployed_servers().items():
        assert server == expected, f"{path} runs gunicorn {server}, make web {expected}"


def _k8s(name: str) -> dict:
    return yaml.safe_load((K8S / name).read_text())


def _duration(value: str) -> int:
    """Compose durations such as 6m, 90s, 1m30s, in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", value)
    assert "".join(n + u for n, u in parts) == value, value
    return sum(int(n) * units[u] for n, u in parts)


@pytest.mark.parametrize(
    "path",
    [
        "Makefile",
        "Dockerfile",
        "deploy/systemd/imagehub-web.service",
        "deploy/k8s/web-deployment.yaml",
    ],
)
def test_gunicorn_waits_for_waiting_requests_on_stop(path):
    timeouts = _graceful_timeouts(path)
    assert timeouts, f"{path} starts gunicorn without --graceful-timeout"
    assert all(timeout >= SYNC_WAIT for timeout in timeouts), (path, timeouts, SYNC_WAIT)


def test_make_run_and_web_use_the_graceful_timeout():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("run", "web"):
        recipe = re.search(rf"^{target}:.*?\n((?:\t.*\n|.*\\\n)+)", makefile, re.MULTILINE)
        assert recipe and "$(GUNICORN_OPTS)" in recipe.group(1), target
    assert "--graceful-timeout $(GRACEFUL_TIMEOUT)" in makefile


def test_systemd_stop_timeouts_cover_the_graceful_stops():
    web = (SYSTEMD / "imagehub-web.service").read_text()
    worker = (SYSTEMD / "imagehub-worker@.service").read_text()
    (graceful,) = _graceful_timeouts("deploy/systemd/imagehub-web.service")
    assert int(re.search(r"^TimeoutStopSec=(\d+)$", web, re.M)[1]) > graceful
    assert int(re.search(r"^TimeoutStopSec=(\d+)$", worker, re.M)[1]) > JOB_TIME_LIMIT


def test_compose_stop_grace_periods_cover_the_graceful_stops():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"web", "worker", "migrate", "postgres", "redis", "minio"} <= set(services)
    (graceful,) = _graceful_timeouts("Dockerfile")  # compose runs the image's command
    assert _duration(services["web"]["stop_grace_period"]) > graceful
    assert _duration(services["worker"]["stop_grace_period"]) > JOB_TIME_LIMIT
    assert services["migrate"]["restart"] == "no"
    needs = services["web"]["depends_on"]["migrate"]["condition"]
    assert needs == "service_completed_successfully"


def test_k8s_grace_periods_probes_and_gpu():
    web = _k8s("web-deployment.yaml")["spec"]["template"]["spec"]
    (container,) = web["containers"]
    (graceful,) = _graceful_timeouts("deploy/k8s/web-deployment.yaml")
    assert f"--graceful-timeout={graceful}" in container["command"]
    assert web["terminationGracePeriodSeconds"] > graceful
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"

    worker = _k8s("worker-deployment.yaml")["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > JOB_TIME_LIMIT
    (container,) = worker["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1  # one process per GPU
    assert "runworker" in container["command"]

    kustomization = _k8s("kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(
        path.name for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml"
    )
