"""Tenants cannot reach each other: editor sessions are per tenant, and with --isolate-tenants
neither the KV prefix cache nor the suggestion cache answers one tenant from another's prompt."""

import asyncio

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.support.scripted_checkpoint import build_scripted_checkpoint
from tests.support.service_process import running_server
from tests.support.slow_checkpoint import LONG, SLOW_SERVER_FLAGS, build_slow_checkpoint

ALPHA = {"Authorization": "Bearer tok-alpha-123"}
BETA = {"Authorization": "Bearer tok-beta-456"}
# Long enough for several 16-token blocks, so a reused prefix shows in tokens_cached.
PREFIX = (
    "import os\nimport sys\n\n\ndef load_config(path):\n    with open(path) as f:\n" * 3 + "    x"
)


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "tokens"
    path.write_text("tok-alpha-123 alpha\ntok-beta-456 beta\n")
    return path


@pytest.fixture(scope="module")
def scripted_model(tmp_path_factory):
    return build_scripted_checkpoint(tmp_path_factory.mktemp("scripted") / "model")


def infill(client: TestClient, headers: dict, prefix: str = PREFIX) -> dict:
    body = {"input_prefix": prefix, "input_suffix": "\n", "stop_mode": "none"}
    response = client.post("/infill", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("isolate", [False, True])
def test_isolated_tenants_share_no_cached_prefix(scripted_model, tokens_file, isolate):
    """With the switch, tenant B's first request for the prompt tenant A just sent computes it
    all (nothing from the prefix cache, nothing from A's suggestion); without it, B reuses A's
    prefix blocks (the timing side channel the switch closes)."""
    settings = Settings(
        model=scripted_model, device="cpu", auth_tokens_file=tokens_file, isolate_tenants=isolate
    )
    with TestClient(create_app(settings)) as client:
        first = infill(client, ALPHA)
        assert first["tokens_cached"] == 0 and first["tokens_predicted"] > 0
        other = infill(client, BETA)
        assert other["content"] == first["content"]
        assert other["tokens_predicted"] > 0  # generated: never another tenant's suggestion
        if isolate:
            assert other["tokens_cached"] == 0
        else:
            assert other["tokens_cached"] > 0
        # A tenant's own next keystroke still reuses its cached prefix with the switch on.
        keystroke = infill(client, ALPHA, PREFIX + "y")
        assert keystroke["tokens_cached"] > 0


def test_another_tenants_session_id_does_not_cancel_a_request(tmp_path_factory, tokens_file):
    """Tenant beta sending tenant alpha's X-Session-Id starts its own session: alpha's request
    runs to its end (before, it came back early as a 200 with a cut answer)."""
    model = build_slow_checkpoint(tmp_path_factory.mktemp("slow") / "model")
    # A deadline far off: only a cancellation may cut alpha short (a loaded machine ran 352 of
    # 1,500 tokens within the default 30 s).
    flags = [
        "--auth-tokens-file",
        str(tokens_file),
        *SLOW_SERVER_FLAGS,
        "--request-timeout-s",
        "300",
    ]
    session = {"X-Session-Id": "editor-1"}
    long_body = {**LONG, "max_tokens": 1500}

    async def two_tenants(url: str):
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:
            alpha = asyncio.create_task(
                client.post("/v1/completions", json=long_body, headers={**ALPHA, **session})
            )
            await asyncio.sleep(0.5)
            beta = await client.post(
                "/v1/completions", json={**LONG, "max_tokens": 4}, headers={**BETA, **session}
            )
            return await alpha, beta

    with running_server(model, *flags) as url:
        alpha, beta = asyncio.run(two_tenants(url))
    assert beta.status_code == 200, beta.text
    assert alpha.status_code == 200, alpha.text
    assert alpha.json()["usage"]["completion_tokens"] == 1500
    assert alpha.json()["choices"][0]["finish_reason"] == "length"
