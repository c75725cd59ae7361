"""docker-compose.yml, the Dockerfile and deploy/ agree with the code (no Docker engine needed:
parsed only).

A compose file rots silently: a renamed command or option, a misspelt or missing setting, a
volume that is not there or a service that depends on a removed one is only noticed by whoever
next runs `docker compose up`. These checks catch it here: every command is parsed by the
real CLI (Typer's for `payouts`, Celery's for `celery`), every environment is read by the real
settings, together with what the deploy step writes for the app services to read.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import click
import pytest
import typer
import yaml
from celery.app.utils import find_app
from celery.bin.base import CLIContext
from celery.bin.celery import celery
from sqlalchemy.engine import make_url
from typer.core import TyperGroup

from config.settings import Settings, settings_from_environ
from devstack import DEV_KEYS, processes
from payouts import cli
from payouts.ops import deploy

ROOT = Path(__file__).resolve().parents[1]
INFRA_SERVICES = {"postgres", "redis", "anvil", "prometheus", "grafana"}
ONE_SHOT = {"migrate", "deploy"}
LONG_RUNNING = {"api", "worker", "beat"}
APP_SERVICES = ONE_SHOT | LONG_RUNNING
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# Each app service cannot do its work without these settings.
REQUIRED = {
    "migrate": {"database_url", "migration_database_url", "embedded_servers"},
    "deploy": {"rpc_url", "chain_id", "signer_key"},
    **{
        name: {
            "database_url",
            "redis_url",
            "rpc_url",
            "chain_id",
            "signer_key",
            "batcher_address",
            "assets",
            "embedded_servers",
        }
        for name in LONG_RUNNING
    },
}
# What the operator must give (`${NAME:?...}`), with a value for the checks below.
OPERATOR_GIVES = {"PAYOUTS_SIGNER_KEY": DEV_KEYS[1]}
# Variables of the images' own that are not the app's settings.
OTHER_VARIABLES = {
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "PROMETHEUS_MULTIPROC_DIR",
    "GF_SECURITY_ADMIN_PASSWORD",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _interpolate(value: str) -> str:
    """Compose's ${NAME:-default} and ${NAME:?error} as `docker compose up` resolves them
    with only the operator's required variables set."""

    def one(match: re.Match[str]) -> str:
        name, kind, default = match.group(1), match.group(2), match.group(3) or ""
        if kind == ":?":
            assert name in OPERATOR_GIVES, f"{name} must be given but the checks have no value"
            return OPERATOR_GIVES[name]
        return default

    return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", one, value)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: _interpolate(str(value)) for key, value in environment.items()}


def _deployed() -> dict[str, str]:
    """What `payouts chain deploy --env-file` writes for the app containers to read."""
    return deploy.Deployment(
        chain_id=31337,
        dev=True,
        batcher_address="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        claims_address="0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
        hot_wallet="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        assets=(
            deploy.DEV_TOKEN.model_copy(
                update={"address": "0x5FbDB2315678afecb367f032d93F642f64180aa3"}
            ),
        ),
        done=(),
    ).settings()


def _settings(service: dict[str, Any], name: str) -> tuple[Settings, set[str]]:
    """The settings the service's process reads, and which of them its environment gives."""
    env = _environment(service)
    if name in LONG_RUNNING:
        env |= _deployed()
    given = {key.removeprefix("PAYOUTS_").lower() for key in env if key.startswith("PAYOUTS_")}
    return settings_from_environ(env), given


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a named volume, or a path in the repository)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        mounts[target] = source
    return mounts


def _mounted_dir(service: dict[str, Any], path: str) -> str | None:
    """The volume or repository path that holds ``path`` inside the container."""
    for target, source in _mounts(service).items():
        if PurePosixPath(path).is_relative_to(target):
            return source
    return None


def test_all_services_are_defined(services: dict[str, dict[str, Any]]) -> None:
    assert services.keys() >= INFRA_SERVICES | APP_SERVICES


def test_app_services_are_built_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        build = services[name].get("build")
        context = build if isinstance(build, str) else (build or {}).get("context")
        assert context == ".", name
        assert (ROOT / "Dockerfile").is_file()


def _payouts(argv: list[str]) -> Any:
    """Parse ``payouts ...`` with the real Typer app, as the console script would: the
    command is resolved and its options parsed (a mistake raises), nothing is run."""
    command = typer.main.get_command(cli.app)
    args = argv[1:]
    while isinstance(command, TyperGroup):
        assert args, f"{argv}: names a group, not a command"
        name, *args = args
        found = command.commands.get(name)
        assert found is not None, f"{argv}: no command {name!r}"
        command = found
    return command.make_context(name, args)


def _celery(argv: list[str]) -> click.Context:
    """Parse ``celery -A APP SUBCOMMAND ...`` with Celery's own command line, the app loaded."""
    subcommand = next(i for i, arg in enumerate(argv) if arg in celery.commands)
    top = celery.make_context("celery", argv[1:subcommand])
    app = find_app(top.params["app"])
    top.obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    return celery.commands[argv[subcommand]].make_context(
        argv[subcommand], argv[subcommand + 1 :], parent=top
    )


def test_every_command_is_one_the_real_cli_takes(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        argv = _command(services[name])
        assert argv[0] in {"payouts", "celery"}, name
        parsed = _payouts(argv) if argv[0] == "payouts" else _celery(argv)
        assert parsed.command.callback is not None, name
    assert _command(services["migrate"]) == ["payouts", "db", "upgrade"]
    assert _command(services["deploy"])[:3] == ["payouts", "chain", "deploy"]
    api = _payouts(_command(services["api"]))
    assert api.params["host"] == "0.0.0.0"  # noqa: S104 - reachable from outside the container
    assert any(str(p).endswith(f":{api.params['port']}") for p in services["api"]["ports"])


def test_a_bad_command_would_be_caught() -> None:
    with pytest.raises(typer.TyperException):
        _payouts(["payouts", "chain", "deploy", "--no-such-option"])
    with pytest.raises(AssertionError):
        _payouts(["payouts", "chains", "deploy"])
    with pytest.raises(click.UsageError):
        _celery(["celery", "-A", "workers.app", "beat", "--no-such-option"])


def test_the_worker_consumes_every_queue(services: dict[str, dict[str, Any]]) -> None:
    # Without -Q the worker consumes every queue workers.app declares, retry tiers included;
    # a -Q list would have to name them all.
    worker = _celery(_command(services["worker"]))
    queues = worker.params.get("queues")
    if queues:
        assert set(processes.queues(Settings())) <= set(queues.split(","))


def test_beat_writes_its_schedule_into_the_state_volume(
    services: dict[str, dict[str, Any]], compose: dict[str, Any]
) -> None:
    schedule = _celery(_command(services["beat"])).params["schedule"]
    volume = _mounted_dir(services["beat"], schedule)
    assert volume in compose["volumes"], f"{schedule} is not on a named volume"
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    state_dir = str(PurePosixPath(schedule).parent)
    # A named volume starts with the ownership of the image's directory: the app user's.
    assert re.search(rf"mkdir -p [^\n]*{state_dir}", dockerfile)
    assert re.search(rf"chown payouts:payouts [^\n]*{state_dir}", dockerfile)


def test_environment_names_are_settings_fields(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for key in _environment(service):
            if key.startswith("PAYOUTS_"):
                field = key.removeprefix("PAYOUTS_").lower()
                assert field in Settings.model_fields, f"{name}: {key} is not a setting"
            else:
                assert key in OTHER_VARIABLES, f"{name}: {key} is neither a setting nor known"


def test_every_app_service_has_every_setting_it_needs(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in APP_SERVICES:
        settings, given = _settings(services[name], name)
        missing = REQUIRED[name] - given
        assert not missing, f"{name} lacks PAYOUTS_{', PAYOUTS_'.join(sorted(missing)).upper()}"
        assert not settings.embedded_servers, f"{name}: no embedded servers in a container"
        if name in LONG_RUNNING:
            assert settings.batcher_address, name
            assert settings.signer_key, name
            assert [a.address for a in settings.assets if a.address], name
            assert settings.chain_id in deploy.DEV_CHAIN_IDS, f"{name}: the compose chain is anvil"
            assert settings.rpc_url == "http://anvil:8545", name
            assert settings.redis_url == "redis://redis:6379/0", name
        if settings.database_url is not None:
            assert "@postgres:5432/" in settings.database_url, name


def test_the_deploy_step_reaches_every_app_container(
    services: dict[str, dict[str, Any]], compose: dict[str, Any]
) -> None:
    env_file = _payouts(_command(services["deploy"])).params["env_file"]
    assert env_file is not None
    entrypoint = _entrypoint_script()
    # The image's entrypoint exports the file the deploy step writes.
    assert f"chain_env={env_file}\n" in entrypoint.read_text(encoding="utf-8")
    volume = _mounted_dir(services["deploy"], str(env_file))
    assert volume in compose["volumes"]
    for name in LONG_RUNNING:
        assert _mounted_dir(services[name], str(env_file)) == volume, name
        assert "entrypoint" not in services[name], f"{name} must keep the image's entrypoint"
    assert set(_deployed()) == {
        "PAYOUTS_BATCHER_ADDRESS",
        "PAYOUTS_CLAIMS_ADDRESS",
        "PAYOUTS_ASSETS",
    }


def test_only_the_migration_connects_as_the_owner(services: dict[str, dict[str, Any]]) -> None:
    migrate, _ = _settings(services["migrate"], "migrate")
    assert migrate.migration_database_url
    assert migrate.database_url
    owner = make_url(migrate.migration_database_url)
    app = make_url(migrate.database_url)
    assert owner.username == "postgres"
    assert app.username not in {owner.username, None, "payouts_app"}
    for name in APP_SERVICES - {"migrate"}:
        env = _environment(services[name])
        assert "PAYOUTS_MIGRATION_DATABASE_URL" not in env, name
        raw = services[name]["environment"].values()
        assert not any("POSTGRES_PASSWORD" in str(value) for value in raw), name
        if "PAYOUTS_DATABASE_URL" in env:
            assert make_url(env["PAYOUTS_DATABASE_URL"]).username == app.username, name


def test_the_signer_key_comes_from_the_operator(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        raw = services[name]["environment"]["PAYOUTS_SIGNER_KEY"]
        assert re.fullmatch(r"\$\{PAYOUTS_SIGNER_KEY:\?[^}]+\}", raw), name


def test_depends_on_targets_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        if isinstance(depends_on, list):
            depends_on = {target: {"condition": "service_started"} for target in depends_on}
        for target, spec in depends_on.items():
            assert target in services, f"{name} depends on unknown service {target!r}"
            assert spec.get("condition", "service_started") in CONDITIONS, name
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # The chain client's circuit breaker counts in Redis wherever PAYOUTS_REDIS_URL is set.
    for dependency in ("anvil", "redis"):
        assert services["deploy"]["depends_on"][dependency]["condition"] == "service_healthy"
    for name in LONG_RUNNING:
        for step in ONE_SHOT:
            assert services[name]["depends_on"][step]["condition"] == (
                "service_completed_successfully"
            ), name
    for name in ONE_SHOT:
        assert services[name]["restart"] == "no", name


def test_volumes_exist(services: dict[str, dict[str, Any]], compose: dict[str, Any]) -> None:
    for name, service in services.items():
        for target, source in _mounts(service).items():
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source} at {target}"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} is not declared"


def test_infrastructure_images(services: dict[str, dict[str, Any]]) -> None:
    assert services["postgres"]["image"] == "postgres:15"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["image"] == "redis:7"
    assert services["anvil"]["image"] == "ghcr.io/foundry-rs/foundry:latest"
    anvil = " ".join([*services["anvil"].get("entrypoint", []), *_command(services["anvil"])])
    assert "anvil --host 0.0.0.0 --block-time 2" in anvil
    for name in ("prometheus", "grafana"):
        image = services[name]["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), f"{name}: pin {image}"


def _repo_path(service: dict[str, Any], container_path: str) -> Path:
    """The repository file a bind mount puts at ``container_path``."""
    for target, source in _mounts(service).items():
        if source.startswith(".") and PurePosixPath(container_path).is_relative_to(target):
            return ROOT / source / PurePosixPath(container_path).relative_to(target)
    raise AssertionError(f"{container_path} is not mounted from the repository")


def test_prometheus_scrapes_the_api_and_the_worker(services: dict[str, dict[str, Any]]) -> None:
    from payouts.api.routes.metrics import router

    prometheus = services["prometheus"]
    [config_arg] = [a for a in _command(prometheus) if a.startswith("--config.file=")]
    config_path = _repo_path(prometheus, config_arg.split("=", 1)[1])
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    for rules in config.get("rule_files", []):
        assert (config_path.parent / rules).is_file(), f"rule file {rules} is missing"
    targets = {
        target: job.get("metrics_path", "/metrics")
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    api_port = _payouts(_command(services["api"])).params["port"]
    assert targets[f"api:{api_port}"] in {route.path for route in router.routes}  # type: ignore[attr-defined]
    worker, _ = _settings(services["worker"], "worker")
    assert targets[f"worker:{worker.metrics_port}"] == "/metrics"
    assert str(worker.metrics_port) in services["worker"]["expose"]


def test_grafana_is_provisioned_with_the_prometheus_and_the_dashboards(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    provisioning = _repo_path(grafana, "/etc/grafana/provisioning")
    [sources] = [
        yaml.safe_load(f.read_text(encoding="utf-8"))
        for f in (provisioning / "datasources").glob("*.yml")
    ]
    [prometheus] = [d for d in sources["datasources"] if d["name"] == "Prometheus"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    [providers] = [
        yaml.safe_load(f.read_text(encoding="utf-8"))
        for f in (provisioning / "dashboards").glob("*.yml")
    ]
    for provider in providers["providers"]:
        dashboards = _repo_path(grafana, provider["options"]["path"])
        assert dashboards.is_dir()
        found = list(dashboards.glob("*.json"))
        assert found, f"no dashboards in {dashboards}"
        for dashboard in found:
            text = dashboard.read_text(encoding="utf-8")
            uids = set(re.findall(r'"datasource":\s*\{[^{}]*"uid":\s*"([^"]+)"', text))
            json.loads(text)
            assert uids <= {prometheus["uid"], "-- Grafana --"} | {
                u for u in uids if u.startswith("$")
            }, f"{dashboard.name} names a datasource Grafana is not given: {uids}"


def _entrypoint_script() -> Path:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    [entrypoint] = re.findall(r'^ENTRYPOINT \["([^"]+)"\]', dockerfile, re.MULTILINE)
    [source] = [
        line.split()[1]
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and line.split()[-1].endswith(f"/{entrypoint}")
    ]
    script = ROOT / source
    assert os.access(script, os.X_OK), f"{source} is not executable"
    return script


def test_dockerfile_ships_the_package_the_artifacts_and_the_entrypoint() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    copies = [line.split()[1:] for line in lines if line.upper().startswith("COPY ")]
    sources = {source.rstrip("/") for *sources, _dest in copies for source in sources}
    assert "contracts/artifacts" in sources
    assert {"payouts", "workers", "config", "migrations", "pyproject.toml"} <= sources
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert not any("npm" in line for line in lines), "the image needs no node toolchain"
    script = _entrypoint_script().read_text(encoding="utf-8")
    assert script.startswith("#!/bin/sh\n")
    assert script.rstrip().endswith('exec "$@"')
