"""The container deployment files, checked without a container engine: lint (hadolint, the
compose spec), exact image versions, no default secret, data volumes, health-gated start, the
image installing the lock, a lock that covers pyproject.toml, and `haproxy -c` on the shipped
load-balancer config with the compose environment."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
LB_CONFIG = ROOT / "deploy" / "haproxy.cfg"
EXACT_TAG = re.compile(r"[\w./-]+:\d+\.\d+\.\d+(-[\w.-]+)?")


def services() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return dict(document["services"])


def instances() -> dict[str, Any]:
    return {name: s for name, s in services().items() if s.get("build") == "."}


def run(*argv: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env=env)


def test_dockerfile_passes_hadolint() -> None:
    result = run(BIN / "hadolint", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_spec() -> None:
    result = run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec",
                 "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_image_has_an_exact_version() -> None:
    pulled = [s["image"] for s in services().values() if "build" not in s]
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, re.MULTILINE)
    assert pulled and bases
    loose = [image for image in pulled + bases if not EXACT_TAG.fullmatch(image)]
    assert not loose, f"pin these to an exact version: {loose}"


def test_two_instances_and_the_jwt_secret_has_no_default() -> None:
    assert len(instances()) == 2
    for name, service in instances().items():
        secret = service["environment"]["REALTIME_JWT_SECRET"]
        assert re.fullmatch(r"\$\{REALTIME_JWT_SECRET:\?[^}]+\}", secret), (name, secret)


def test_kafka_and_redis_keep_their_data_in_volumes() -> None:
    kafka, redis = services()["kafka"], services()["redis"]
    data_dir = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert f"kafka-data:{data_dir}" in kafka["volumes"]
    assert "redis-data:/data" in redis["volumes"]


def test_balancer_starts_after_healthy_instances_with_the_shipped_config() -> None:
    lb = services()["lb"]
    assert lb["depends_on"] == {name: {"condition": "service_healthy"} for name in instances()}
    assert "HEALTHCHECK" in DOCKERFILE  # what service_healthy waits for
    assert "./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in lb["volumes"]
    upstreams = {v for k, v in lb["environment"].items() if k.startswith("REALTIME_UPSTREAM_")}
    assert upstreams == {f"{name}:8080" for name in instances()}


def test_image_installs_the_lock_and_checks_the_configured_port() -> None:
    assert "--constraint constraints.txt" in DOCKERFILE
    assert "realtime==" not in DOCKERFILE
    [healthcheck] = re.findall(r"^HEALTHCHECK .*\n.*", DOCKERFILE, re.MULTILINE)
    assert "REALTIME_PORT" in healthcheck and "8080/" not in healthcheck
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert not ignored & {"constraints.txt", "pyproject.toml", "README.md", "realtime"}


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def _requirements(extras: set[str]) -> list[Requirement]:
    """The project's requirements with ``extras``, following ``realtime[...]`` self-references."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    found: list[Requirement] = []
    pending, seen = ["", *extras], set()
    while pending:
        group = pending.pop()
        if group in seen:
            continue
        seen.add(group)
        for text in groups[group]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == "realtime":
                pending.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


def test_lock_pins_every_requirement_within_its_bounds() -> None:
    locked = _locked()
    environment = {**default_environment(), "extra": ""}
    problems = []
    for requirement in _requirements({"dev"}):
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        version = locked.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement} (locked: {version})")
    assert not problems, f"constraints.txt is stale, run scripts/lock.sh: {problems}"


def _haproxy_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert shutil.which("haproxy"), "haproxy is required (scripts/test.sh installs it)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    return run("haproxy", "-c", "-f", LB_CONFIG, env={**clean, **env})


def test_haproxy_accepts_the_shipped_config_with_the_compose_environment() -> None:
    result = _haproxy_check(services()["lb"]["environment"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout


def test_haproxy_config_names_what_is_missing() -> None:
    result = _haproxy_check({"REALTIME_LB_BIND": ":8080"})
    assert result.returncode != 0
    assert "REALTIME_UPSTREAM_1 and REALTIME_UPSTREAM_2 must be set" in result.stderr
