"""What of the images and docker-compose.yml can be checked without a container engine: every
path a Dockerfile copies exists, every SERVICE_* variable is a real server flag, and the compose
services' own commands, started as plain processes, answer a completion through the Redis cache."""

import dataclasses
import json
import os
import shlex
import sys

import httpx
import pytest
import yaml

from service.settings import ENV_PREFIX, Settings
from tests.support.redis_server import RedisServer
from tests.support.service_process import REPO, free_port, started_server

DOCKERFILES = ("docker/Dockerfile", "docker/Dockerfile.cuda")
IMAGE_WORKDIR = "/app"  # where the images put the checkpoint; the repository stands for it here


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [
        line for line in (REPO / dockerfile).read_text().splitlines() if not line.startswith("#")
    ]
    joined = "\n".join(lines).replace("\\\n", " ")
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            pairs.append((keyword.upper(), arguments.strip()))
    return pairs


def image_env(dockerfile: str) -> dict[str, str]:
    env = {}
    for keyword, arguments in instructions(dockerfile):
        if keyword == "ENV":
            env |= dict(item.split("=", 1) for item in shlex.split(arguments))
    return env


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_path_a_dockerfile_copies_exists(dockerfile):
    copies = [a for k, a in instructions(dockerfile) if k == "COPY" and "--from=" not in a]
    assert copies
    for arguments in copies:
        *sources, _destination = [w for w in shlex.split(arguments) if not w.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"{dockerfile}: COPY {source}: no such path"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_images_run_unprivileged_and_check_readiness(dockerfile):
    keywords = dict(instructions(dockerfile))
    assert keywords.get("USER") not in (None, "root", "0")
    assert "/v1/health" in keywords["HEALTHCHECK"]


def test_every_service_variable_is_a_server_flag():
    flags = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    variables = {
        name
        for service in compose()["services"].values()
        for name in (service.get("environment") or {})
        if name.startswith(ENV_PREFIX)
    }
    for dockerfile in DOCKERFILES:
        variables |= {name for name in image_env(dockerfile) if name.startswith(ENV_PREFIX)}
    assert variables, "compose and the images set no SERVICE_* variable"
    assert variables <= flags, f"not server flags: {sorted(variables - flags)}"


def test_compose_services_answer_a_completion_through_redis_as_plain_processes(tmp_path):
    services = compose()["services"]
    redis = RedisServer(tmp_path)
    redis_command = services["redis"]["command"]
    assert redis_command[0] == "redis-server"
    redis.start(options=redis_command[1:])

    completion = services["completion"]
    dockerfile = completion["build"]["dockerfile"]
    (cmd,) = [json.loads(a) for k, a in instructions(dockerfile) if k == "CMD"]
    assert cmd[0] == "python"
    port = free_port()
    command = [sys.executable, *cmd[1:], "--host", "127.0.0.1", "--port", str(port)]
    env = dict(os.environ)
    for name, value in (image_env(dockerfile) | completion["environment"]).items():
        if name.startswith(ENV_PREFIX):
            value = value.replace(f"{IMAGE_WORKDIR}/", f"{REPO}/")
            env[name] = value.replace("redis://redis:6379", f"redis://127.0.0.1:{redis.port}")
    try:
        with started_server(
            command, port=port, log_path=tmp_path / "server.log", env=env
        ) as server:
            body = {"language": "python", "segments": {"prefix": "import os\n", "suffix": "\n"}}
            first = httpx.post(f"{server.url}/v1/completions", json=body, timeout=60)
            again = httpx.post(f"{server.url}/v1/completions", json=body, timeout=60)
            metrics = httpx.get(f"{server.url}/metrics").text
        stored = redis.client().dbsize()
    finally:
        redis.kill()
    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["choices"] == again.json()["choices"]
    assert 'completion_cache_lookups_total{outcome="hit"} 1.0' in metrics
    assert stored, "the suggestion was not stored in Redis"
