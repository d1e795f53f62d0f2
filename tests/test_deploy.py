"""Deployment files: docker-compose.yml validates (with ``docker compose`` or ``docker-compose``
when installed, else by its structure), the Dockerfile keeps its promises, and .env.example
documents every setting."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from fakevoice.settings import Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"


def compose_command() -> list[str] | None:
    """``docker compose`` (v2 plugin) or ``docker-compose``, whichever works here."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def compose_config(folder: Path) -> subprocess.CompletedProcess[str]:
    command = compose_command()
    if command is None:
        pytest.skip(
            "neither `docker compose` nor `docker-compose` is installed (`make test` adds it)"
        )
    return subprocess.run(
        [*command, "config"], cwd=folder, capture_output=True, text=True, timeout=60
    )


def project(tmp_path: Path, env: str | None) -> Path:
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    if env is not None:
        (tmp_path / ".env").write_text(env)
    return tmp_path


def test_compose_config_validates_with_the_example_env(tmp_path: Path) -> None:
    result = compose_config(project(tmp_path, ENV_EXAMPLE.read_text()))
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"app", "api", "worker", "postgres"} <= set(services)
    url = services["worker"]["environment"]["FAKEVOICE_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://fakevoice:") and "@postgres:5432/" in url


def test_compose_refuses_to_start_without_a_database_password(tmp_path: Path) -> None:
    result = compose_config(project(tmp_path, "APP_PORT=8501\n"))
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_compose_structure() -> None:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"app", "api", "worker", "postgres", "ray-head"}
    workbench = [services[name] for name in ("app", "api", "worker", "ray-head")]
    for service in workbench:
        assert service["env_file"] == ".env"
        assert service["volumes"] == ["data:/data"]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    (device,) = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert services["ray-head"]["profiles"] == ["ray"]
    assert all("profiles" not in services[n] for n in ("app", "api", "worker", "postgres"))
    assert "data" in compose["volumes"]
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["api"]
    assert "POSTGRES_PASSWORD:?" in COMPOSE.read_text()  # no default password


def test_dockerfile_runs_as_a_user_with_a_health_check() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim-bookworm", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    assert "pip install -r requirements.txt" in text
    assert "asterisk-core-sounds-en-g722" in text and "fillets-ng-data-cs" in text
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".venv", "data", ".git"} <= set(ignored)


def test_env_example_lists_every_setting_with_its_default() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    listed = {}
    for line in lines:
        match = re.match(r"^#?(FAKEVOICE_[A-Z0-9_]+)=(.*)$", line)
        if match:
            listed[match.group(1)] = match.group(2)
    for name, field in Settings.model_fields.items():
        key = f"FAKEVOICE_{name.upper()}"
        assert key in listed, f"{key} is missing from .env.example"
        default = field.default
        if isinstance(default, bool):
            assert listed[key] == str(default).lower(), key
        elif isinstance(default, int | float) and not isinstance(default, bool):
            assert float(listed[key]) == float(default), key
        elif isinstance(default, str):
            assert listed[key] == default, key
    assert set(listed) == {f"FAKEVOICE_{n.upper()}" for n in Settings.model_fields}
    assert ".env" in (REPO / ".gitignore").read_text().split()
