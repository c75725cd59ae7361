"""docker-compose.yml and the Dockerfile agree with the code (no Docker engine needed: parsed only).

A compose file rots silently: a renamed module, a misspelt setting or a service that depends on a
removed one is only noticed by whoever next runs `docker compose up`. These checks catch it here.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import Settings
from devstack import processes

ROOT = Path(__file__).resolve().parents[1]
INFRA_SERVICES = {"postgres", "redis", "anvil"}
APP_SERVICES = {"migrate", "api", "worker", "beat"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return dict(compose["services"])


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _module_exists(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_all_services_are_defined(services: dict[str, dict[str, Any]]) -> None:
    assert services.keys() >= INFRA_SERVICES | APP_SERVICES


def test_app_services_are_built_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        build = services[name].get("build")
        context = build if isinstance(build, str) else (build or {}).get("context")
        assert context == ".", name
        assert (ROOT / "Dockerfile").is_file()


def test_celery_commands_name_an_existing_app_module(services: dict[str, dict[str, Any]]) -> None:
    for name in ("worker", "beat"):
        argv = _command(services[name])
        assert argv[0] == "celery", name
        app = argv[argv.index("-A") + 1]
        module = app.split(":")[0]
        assert _module_exists(module), f"{name}: celery app module {module!r} is not in the repo"
    # Without -Q the worker consumes every queue workers.app declares, retry tiers included;
    # a -Q list would have to name them all.
    worker = _command(services["worker"])
    if "-Q" in worker:
        queues = set(worker[worker.index("-Q") + 1].split(","))
        assert set(processes.queues(Settings())) <= queues


def test_payouts_commands_name_the_console_script(services: dict[str, dict[str, Any]]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    scripts = pyproject["project"]["scripts"]
    for name in APP_SERVICES:
        argv = _command(services[name])
        if argv[0] != "payouts":
            continue
        target = scripts["payouts"]
        module = target.split(":")[0]
        assert _module_exists(module), f"{name}: script target {target!r} is not in the repo"
    assert _command(services["migrate"])[:3] == ["payouts", "db", "upgrade"]
    api = _command(services["api"])
    assert api[:2] == ["payouts", "api"]
    assert api[api.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - reachable from outside the container
    port = api[api.index("--port") + 1]
    assert any(str(p).endswith(f":{port}") for p in services["api"]["ports"])


def test_environment_names_are_settings_fields(services: dict[str, dict[str, Any]]) -> None:
    seen: set[str] = set()
    for name, service in services.items():
        environment = service.get("environment", {})
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        for key in environment:
            if not key.startswith("PAYOUTS_"):
                continue
            field = key.removeprefix("PAYOUTS_").lower()
            assert field in Settings.model_fields, f"{name}: {key} is not a setting"
            seen.add(key)
    assert {
        "PAYOUTS_DATABASE_URL",
        "PAYOUTS_REDIS_URL",
        "PAYOUTS_RPC_URL",
        "PAYOUTS_SIGNER_KEY",
    } <= seen


def test_app_services_point_at_the_compose_servers(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["PAYOUTS_DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert "@postgres:5432/" in env["PAYOUTS_DATABASE_URL"], name
        assert env["PAYOUTS_REDIS_URL"] == "redis://redis:6379/0", name
        assert env["PAYOUTS_RPC_URL"] == "http://anvil:8545", name
        # The key comes from the operator's environment, never from the file.
        assert re.fullmatch(r"\$\{PAYOUTS_SIGNER_KEY:\?[^}]+\}", env["PAYOUTS_SIGNER_KEY"]), name


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
    for name in ("worker", "beat"):
        assert (
            services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        )


def test_infrastructure_images(services: dict[str, dict[str, Any]]) -> None:
    assert services["postgres"]["image"] == "postgres:15"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["image"] == "redis:7"
    assert services["anvil"]["image"] == "ghcr.io/foundry-rs/foundry:latest"
    anvil = " ".join([*services["anvil"].get("entrypoint", []), *_command(services["anvil"])])
    assert "anvil --host 0.0.0.0 --block-time 2" in anvil


def test_dockerfile_ships_the_package_and_the_artifacts() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    copies = [line.split()[1:] for line in lines if line.upper().startswith("COPY ")]
    sources = {source.rstrip("/") for *sources, _dest in copies for source in sources}
    assert "contracts/artifacts" in sources
    assert {"payouts", "workers", "config", "pyproject.toml"} <= sources
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert not any("npm" in line for line in lines), "the image needs no node toolchain"
