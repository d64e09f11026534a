"""The command line: flags, their environment variables, and the missing-checkpoint message."""

import subprocess
import sys
from pathlib import Path

import pytest

from service.__main__ import build_parser, main
from service.settings import Settings
from tests.support.service_process import REPO


def settings_from(argv: list[str]) -> Settings:
    args = vars(build_parser().parse_args(["serve", *argv]))
    args.pop("command")
    return Settings(**args)


def test_flags_and_environment_variables(monkeypatch):
    monkeypatch.setenv("SERVICE_PORT", "9100")
    monkeypatch.setenv("SERVICE_REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("SERVICE_MAX_BODY_BYTES", "2048")
    settings = settings_from(["--port", "9200", "--device", "cpu", "--model", "/models/x"])
    assert settings.port == 9200  # the flag wins over the variable
    assert settings.redis_url == "redis://cache:6379/0"
    assert settings.max_body_bytes == 2048
    assert settings.device == "cpu" and settings.model == Path("/models/x")
    assert settings.auth_tokens_file is None and settings.num_threads is None


@pytest.mark.parametrize(
    "env, argv, expected",
    [
        (None, [], False),
        (None, ["--isolate-tenants"], True),
        ("true", [], True),
        ("1", [], True),
        ("false", [], False),  # bool("false") would be True
        ("0", [], False),
        ("true", ["--no-isolate-tenants"], False),  # the flag wins over the variable
    ],
)
def test_switches_from_flags_and_environment(monkeypatch, env, argv, expected):
    if env is not None:
        monkeypatch.setenv("SERVICE_ISOLATE_TENANTS", env)
    assert settings_from(argv).isolate_tenants is expected


def test_the_semantic_engine_is_on_unless_switched_off(monkeypatch):
    assert settings_from([]).semantic is True
    assert settings_from(["--no-semantic"]).semantic is False
    monkeypatch.setenv("SERVICE_SEMANTIC", "off")
    assert settings_from([]).semantic is False


def test_bad_switch_value_is_an_error(monkeypatch):
    monkeypatch.setenv("SERVICE_ISOLATE_TENANTS", "maybe")
    with pytest.raises(SystemExit):
        build_parser()


def test_bad_environment_value_is_an_error(monkeypatch):
    monkeypatch.setenv("SERVICE_DEVICE", "gpu")
    with pytest.raises(SystemExit):
        build_parser()


def test_help_names_every_flag_and_its_variable():
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    for flag in ("--host", "--port", "--model", "--device", "--redis-url", "--auth-tokens-file"):
        assert flag in result.stdout
    assert "SERVICE_AUTH_TOKENS_FILE" in result.stdout


def test_missing_checkpoint_says_what_to_do(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--model", str(tmp_path / "nothing")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "no config.json" in result.stderr and "Hugging Face" in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--line-num-beams", "9"], "between 1 and max_num_beams (8)"),
        (["--line-num-beams", "0"], "between 1 and max_num_beams (8)"),
        (["--line-num-beams", "4", "--max-num-beams", "2"], "max_num_beams (2)"),
        (["--block-num-beams", "9"], "between 1 and max_num_beams (8)"),
    ],
)
def test_a_server_beam_search_outside_the_beam_limit_is_refused(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", *argv])
    assert exit_info.value.code == 2  # argparse's usage error, before any model loads
    error = capsys.readouterr().err
    flag = argv[0].removeprefix("--").replace("-", "_")
    assert f"{flag} is" in error and message in error
