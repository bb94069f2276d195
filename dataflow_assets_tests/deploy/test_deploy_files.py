"""deploy/: what can be checked without a Docker engine or a Kubernetes cluster.

The instance configs load through Dagster's own validation (``DagsterInstance.from_config``)
with the pinned dagster, dagster-postgres, dagster-docker and dagster-k8s, against the test
PostgreSQL server; the compose file, the workspace, the Dockerfile and the Helm values are read
and cross-checked (every file they name exists, every name they share agrees). The image's
command is run here, outside any container, to serve the code location that the compose
workspace reaches. Nothing here builds an image, starts a container or renders the chart.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster_docker import DockerRunLauncher
from dagster_k8s import K8sRunLauncher

from dataflow_assets.flow import load_flows
from dataflow_assets.schedules import job_name
from dataflow_assets_tests.servers import LOCALHOST, PostgresServer, free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_INSTANCE = DEPLOY / "docker" / "dagster.yaml"
#: The chart's top-level values (chart 1.13: helm/dagster/schema's DagsterHelmValues).
CHART_KEYS = {
    "dagsterWebserver", "dagster-user-deployments", "postgresql",
    "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret", "rabbitmq", "redis",
    "flower", "ingress", "imagePullSecrets", "computeLogManager", "scheduler", "runLauncher",
    "pythonLogs", "dagsterDaemon", "busybox", "migrate", "telemetry", "serviceAccount", "global",
    "retention", "concurrency", "additionalInstanceConfig",
}  # fmt: skip


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    return load(DEPLOY / "docker-compose.yaml")


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def instruction(name: str) -> list[str]:
    return [line[len(name) + 1 :] for line in dockerfile() if line.startswith(name + " ")]


def image_env() -> dict[str, str]:
    """The image's ENV settings (``NAME=value`` pairs, values without spaces)."""
    return dict(e.split("=", 1) for e in " ".join(instruction("ENV")).split())


def home_with(config: dict[str, Any] | Path, tmp_path: Path, name: str = "home") -> Path:
    home = tmp_path / name
    home.mkdir()
    if isinstance(config, Path):
        shutil.copyfile(config, home / "dagster.yaml")
    else:
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


@pytest.fixture
def pg_env(monkeypatch: pytest.MonkeyPatch, postgres: PostgresServer, pg_database: str) -> None:
    """The DAGSTER_POSTGRES_* variables of the deploy files, naming the test server."""
    monkeypatch.setenv("DAGSTER_POSTGRES_USER", postgres.user)
    monkeypatch.setenv("DAGSTER_POSTGRES_PASSWORD", postgres.password)
    monkeypatch.setenv("DAGSTER_POSTGRES_HOST", postgres.host)
    monkeypatch.setenv("DAGSTER_POSTGRES_PORT", str(postgres.port))
    monkeypatch.setenv("DAGSTER_POSTGRES_DB", pg_database)


def test_every_deploy_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert {p.relative_to(DEPLOY).as_posix() for p in files} >= {
        "dagster-postgres.yaml",
        "docker-compose.yaml",
        "docker/dagster.yaml",
        "docker/workspace.yaml",
        "helm/values.yaml",
    }
    for path in files:
        assert isinstance(load(path), dict), path


def test_the_compose_instance_passes_dagsters_validation(pg_env: None, tmp_path: Path) -> None:
    with dg.DagsterInstance.from_config(str(home_with(COMPOSE_INSTANCE, tmp_path))) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, DockerRunLauncher)
        assert launcher.networks == ["dataflow_network"]
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, dg.QueuedRunCoordinator)
        queue = coordinator.get_run_queue_config()
        assert queue.max_concurrent_runs == 8
        assert (
            queue.tag_concurrency_limits
            == load(COMPOSE_INSTANCE)["run_coordinator"]["config"]["tag_concurrency_limits"]
        )
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert instance.run_monitoring_start_timeout_seconds == 180
        # The storage is the PostgreSQL server the variables name: it answers.
        assert instance.get_runs() == []


def test_the_validation_rejects_what_dagster_does_not_know(pg_env: None, tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelled setting is refused by the same path."""
    config = load(COMPOSE_INSTANCE)
    config["run_monitoring"]["start_timeout_secs"] = config["run_monitoring"].pop(
        "start_timeout_seconds"
    )
    with pytest.raises(dg.DagsterInvalidConfigError, match="start_timeout_secs"):
        dg.DagsterInstance.from_config(str(home_with(config, tmp_path)))
    docker = load(COMPOSE_INSTANCE)
    docker["run_launcher"]["config"]["networkz"] = "x"
    with pytest.raises(dg.DagsterInvalidConfigError, match="networkz"):
        dg.DagsterInstance.from_config(str(home_with(docker, tmp_path, "home2"))).run_launcher  # noqa: B018


def test_compose_services_name_files_images_networks_and_volumes_that_agree() -> None:
    c, instance = compose(), load(COMPOSE_INSTANCE)
    services = c["services"]
    assert set(services) == {"postgresql", "code", "webserver", "daemon"}
    code = services["code"]
    context = (DEPLOY / code["build"]["context"]).resolve()
    assert context == REPO and (context / code["build"]["dockerfile"]).is_file()
    image = code["image"]
    assert code["environment"]["DAGSTER_CURRENT_IMAGE"] == image
    assert services["webserver"]["image"] == services["daemon"]["image"] == image
    # The workspace the webserver and daemon load is the one the Dockerfile puts there.
    home = image_env()["DAGSTER_HOME"]
    for name in ("webserver", "daemon"):
        command = services[name]["command"]
        assert command[command.index("-w") + 1] == f"{home}/workspace.yaml"
    [copy_home] = [c for c in instruction("COPY") if c.endswith("/opt/dagster/dagster_home/")]
    assert copy_home.split()[:-1] == ["deploy/docker/dagster.yaml", "deploy/docker/workspace.yaml"]
    [server] = load(DEPLOY / "docker" / "workspace.yaml")["load_from"]
    grpc = server["grpc_server"]
    cmd = yaml.safe_load(instruction("CMD")[0])
    assert grpc["host"] == "code" and str(grpc["port"]) == cmd[cmd.index("-p") + 1]
    assert grpc["location_name"] == cmd[cmd.index("--location-name") + 1] == "dataflow"
    # Every Dagster process gets the PostgreSQL variables the instance reads.
    wanted = {
        v["env"]
        for v in instance["storage"]["postgres"]["postgres_db"].values()
        if isinstance(v, dict)
    }
    for name in ("code", "webserver", "daemon"):
        assert wanted <= set(services[name]["environment"]), name
    # What the run containers get from the daemon is set on the daemon.
    launcher = instance["run_launcher"]["config"]
    assert set(launcher["env_vars"]) <= set(services["daemon"]["environment"])
    # The runs join the compose network and mount the compose volumes, by their fixed names.
    networks = {n["name"] for n in c["networks"].values()}
    assert launcher["network"] in networks
    fixed = {v["name"] for v in c["volumes"].values() if v and "name" in v}
    mounts = dict(v.split(":") for v in launcher["container_kwargs"]["volumes"])
    assert set(mounts) <= fixed
    code_mounts = dict(v.split(":") for v in code["volumes"])
    assert mounts == code_mounts  # the code location sees the store the runs write and read
    events_dir = os.path.dirname(image_env()["DATAFLOW_EVENTS_DB"])
    assert mounts["dataflow_events"] == events_dir


def test_the_image_installs_the_locked_environment() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    [base] = instruction("FROM")
    version = re.fullmatch(r"python:(\d+\.\d+)-slim", base)
    assert version is not None, base
    low = re.fullmatch(r">=(\d+\.\d+)", pyproject["project"]["requires-python"])
    assert low is not None
    assert tuple(map(int, version[1].split("."))) >= tuple(map(int, low[1].split(".")))
    syncs = [r for r in instruction("RUN") if "uv sync" in r]
    assert syncs and all("--frozen" in r and "--no-dev" in r for r in syncs)
    [extras] = [a for a in instruction("ARG") if a.startswith("UV_EXTRAS=")]
    named = set(re.findall(r"--extra (\w+)", extras))
    assert named and named <= set(pyproject["project"]["optional-dependencies"])
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    locked = {p["name"] for p in lock["package"]}
    assert {"dagster-docker", "dagster-k8s", "dagster-postgres"} <= locked
    # Every file the image copies exists and is let through the build context's ignore file.
    allowed = {
        line[1:].rstrip("/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for copy in instruction("COPY"):
        for source in copy.split()[:-1]:
            assert (REPO / source).exists(), source
            assert any(source == a or source.startswith(a + "/") for a in allowed), source
    # The lock is the resolution of pyproject.toml as it is: `uv sync --frozen` installs it.
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is how the tests run; it must be on PATH"
    check = subprocess.run(
        [uv, "lock", "--check", "--offline"], cwd=REPO, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr


def test_helm_values_name_chart_settings_and_the_same_limits() -> None:
    values, instance = load(DEPLOY / "helm" / "values.yaml"), load(COMPOSE_INSTANCE)
    assert set(values) <= CHART_KEYS, set(values) - CHART_KEYS
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert set(values["runLauncher"]["config"]) == {"k8sRunLauncher"}
    queue = values["dagsterDaemon"]["runCoordinator"]
    assert queue["type"] == "QueuedRunCoordinator" and queue["enabled"]
    queued = queue["config"]["queuedRunCoordinator"]
    ours = instance["run_coordinator"]["config"]
    assert queued["maxConcurrentRuns"] == ours["max_concurrent_runs"]
    assert queued["tagConcurrencyLimits"] == ours["tag_concurrency_limits"]
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert monitoring["enabled"] and monitoring["maxResumeRunAttempts"] == 0
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    [deployment] = values["dagster-user-deployments"]["deployments"]
    cmd = yaml.safe_load(instruction("CMD")[0])
    args = deployment["codeServerArgs"]
    assert args[args.index("-m") + 1] == cmd[cmd.index("-m") + 1]
    assert str(deployment["port"]) == cmd[cmd.index("-p") + 1]


#: How the chart renders ``runLauncher.config.k8sRunLauncher`` into the instance's
#: ``run_launcher.config`` (its configmap-instance template), for the keys our values set.
HELM_TO_LAUNCHER = {
    "imagePullPolicy": "image_pull_policy",
    "loadInclusterConfig": "load_incluster_config",
    "envConfigMaps": "env_config_maps",
    "envSecrets": "env_secrets",
    "envVars": "env_vars",
    "volumeMounts": "volume_mounts",
    "volumes": "volumes",
    "failPodOnRunFailure": "fail_pod_on_run_failure",
    "runK8sConfig": "run_k8s_config",
}
RUN_K8S_CONFIG = {
    "containerConfig": "container_config",
    "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata",
    "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}


def test_the_k8s_run_launcher_settings_pass_dagster_k8s_validation(
    pg_env: None, tmp_path: Path
) -> None:
    """The launcher block of the Helm values, as the chart renders it, loads as the pinned
    dagster-k8s's K8sRunLauncher (from a kubeconfig file instead of in-cluster credentials:
    nothing here talks to a cluster)."""
    helm = load(DEPLOY / "helm" / "values.yaml")["runLauncher"]["config"]["k8sRunLauncher"]
    assert set(helm) <= set(HELM_TO_LAUNCHER), set(helm) - set(HELM_TO_LAUNCHER)
    config = {HELM_TO_LAUNCHER[k]: v for k, v in helm.items()}
    # The chart takes Kubernetes env sources ({name: ...}) and renders their names.
    for key in ("env_config_maps", "env_secrets"):
        config[key] = [source["name"] for source in config.get(key, [])]
    config["run_k8s_config"] = {RUN_K8S_CONFIG[k]: v for k, v in config["run_k8s_config"].items()}
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    config.update(
        load_incluster_config=False,
        kubeconfig_file=str(kubeconfig),
        # The chart fills these in with its own objects' names.
        instance_config_map="dataflow-instance",
        service_account_name="dataflow",
    )
    instance_config = load(COMPOSE_INSTANCE)
    instance_config["run_launcher"] = {
        "module": "dagster_k8s",
        "class": "K8sRunLauncher",
        "config": config,
    }
    with dg.DagsterInstance.from_config(str(home_with(instance_config, tmp_path))) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, K8sRunLauncher)
        assert launcher.fail_pod_on_run_failure is True
        assert launcher.env_secrets == ["dataflow-destination-secrets"]


def test_the_images_command_serves_the_code_location_the_workspace_names(tmp_path: Path) -> None:
    """The Dockerfile's CMD, run with this environment's dagster, serves every flow of flows/;
    the compose workspace (pointed at 127.0.0.1 instead of the `code` service) loads it."""
    cmd = yaml.safe_load(instruction("CMD")[0])
    port = free_port()
    cmd[cmd.index("-h") + 1], cmd[cmd.index("-p") + 1] = LOCALHOST, str(port)
    bindir = Path(sys.executable).parent
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DATAFLOW_FLOWS_DIR": str(REPO / "flows"),
        "DATAFLOW_EVENTS_DB": str(tmp_path / "events.duckdb"),
        "DATAFLOW_STAGING_DIR": str(tmp_path / "staging"),
    }
    workspace = load(DEPLOY / "docker" / "workspace.yaml")
    workspace["load_from"][0]["grpc_server"].update(host=LOCALHOST, port=port)
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    log = tmp_path / "code-server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(bindir / cmd[0]), *cmd[1:]],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the server and the child it spawns
        )
    try:
        wait_for_port(port, timeout=180, alive=lambda: server.poll() is None)
        # The port opens before the definitions are loaded: ask until they are.
        deadline = time.monotonic() + 240
        while True:
            listed = subprocess.run(
                [str(bindir / "dagster"), "job", "list", "-w", str(tmp_path / "workspace.yaml")],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=240,
            )
            if listed.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr[-2000:]
    finally:
        # SIGKILL at once: the code server does not stop on SIGTERM within 30 s (it is a test
        # server: nothing of it needs to outlive the test).
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    flows = load_flows(REPO / "flows")
    assert flows.flows and not flows.errors
    jobs = set(re.findall(r"^Job: (\S+)$", listed.stdout, re.M))
    assert {job_name(flow) for flow in flows.flows} <= jobs, listed.stdout[-2000:]
