"""Each dialect's request and response shape, against the app with a real engine in-process.

The checkpoint is scripted (tests/support/scripted_checkpoint.py): after any FIM prompt, greedy decoding
spells " b\\nprint(add)" then EOS, so every assertion on text is exact.
"""

import json

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.support.scripted_checkpoint import SCRIPT, build_scripted_checkpoint

PREFIX = "def add(a, b):\n    return a +"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    model = build_scripted_checkpoint(tmp_path_factory.mktemp("scripted") / "model")
    # Every step's piece streamed: the scripted model's whole answer takes less than one interval.
    settings = Settings(
        model=model, device="cpu", prefix_tokens=128, suffix_tokens=32, stream_interval_ms=0
    )
    with TestClient(create_app(settings)) as client:
        yield client


def tabby(client, prefix=PREFIX, suffix="\n", **fields):
    body = {"language": "python", "segments": {"prefix": prefix, "suffix": suffix}, **fields}
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_tabby_response_shape_and_block_stop(client):
    body = tabby(client)
    assert body["id"].startswith("cmpl-") and len(body["id"]) == len("cmpl-") + 36
    # Code-aware stopping: `print(add)` leaves the function's block.
    assert body["choices"] == [{"index": 0, "text": " b"}]


def test_tabby_single_line_mode_when_code_follows_the_cursor(client):
    assert tabby(client, suffix=" # sum\n")["choices"][0]["text"] == " b"
    # Without code-aware stopping the script runs to EOS, minus nothing.
    assert tabby(client, stop_mode="none")["choices"][0]["text"] == SCRIPT


def test_tabby_crlf_in_crlf_out(client):
    body = tabby(client, prefix=PREFIX.replace("\n", "\r\n"), stop_mode="none")
    assert body["choices"][0]["text"] == SCRIPT.replace("\n", "\r\n")


def test_tabby_debug_prompt_is_the_fim_template_with_snippets(client):
    body = tabby(
        client,
        segments={
            "prefix": PREFIX,
            "suffix": "\nprint(1)\n",
            "declarations": [{"filepath": "lib/math.py", "body": "def mul(a, b):\n    ..."}],
        },
        debug_options={"return_prompt": True},
    )
    assert body["debug_data"]["prompt"] == (
        "<fim_prefix># Path: lib/math.py\n# def mul(a, b):\n#     ...\n"
        + PREFIX
        + "<fim_suffix>\nprint(1)\n<fim_middle>"
    )


@pytest.mark.parametrize("keep_imports", [True, False])
def test_tabby_clip_keeps_the_module_imports_it_drops_with_the_flag(tmp_path, keep_imports):
    imports = "import os\nfrom m import (\n    a,\n)\n"
    body = "".join(f"x{i} = {i}\n" for i in range(40))
    settings = Settings(
        model=build_scripted_checkpoint(tmp_path / "model"),
        device="cpu",
        tabby_prefix_chars=140,  # the scripted model's 256 positions take the whole prompt
        tabby_prefix_imports=keep_imports,
    )
    with TestClient(create_app(settings)) as client:
        prompt = tabby(
            client, prefix=imports + body + PREFIX, debug_options={"return_prompt": True}
        )
    kept = prompt["debug_data"]["prompt"].removeprefix("<fim_prefix>")
    assert kept.startswith(imports + "\nx") is keep_imports  # the imports, a blank line, the clip
    assert kept.startswith("x") is not keep_imports


def test_tabby_user_field_and_session_header_are_accepted(client):
    assert tabby(client, user="alice")["choices"][0]["text"] == " b"


def test_openai_response_shape(client):
    body = {"model": "any-name", "prompt": PREFIX, "suffix": "\n", "max_tokens": 30}
    response = client.post("/v1/completions", json=body).json()
    assert response["object"] == "text_completion" and response["id"].startswith("cmpl-")
    assert response["choices"] == [
        {"text": SCRIPT, "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]
    usage = response["usage"]
    assert usage["completion_tokens"] == 9  # 8 script tokens + EOS
    assert usage["total_tokens"] == usage["prompt_tokens"] + 9


def test_openai_max_tokens_and_n_and_prompt_lists(client):
    body = {"prompt": [PREFIX, "x = add(1, 2) +"], "suffix": "\n", "max_tokens": 2, "n": 2}
    response = client.post("/v1/completions", json=body).json()
    assert [c["index"] for c in response["choices"]] == [0, 1, 2, 3]
    assert {c["text"] for c in response["choices"]} == {" b\n"}
    assert {c["finish_reason"] for c in response["choices"]} == {"length"}


def test_openai_stop_string_and_opt_in_code_stopping(client):
    body = {"prompt": PREFIX, "suffix": "\n", "max_tokens": 30, "stop": ["(add"]}
    assert client.post("/v1/completions", json=body).json()["choices"][0]["text"] == " b\nprint"
    body = {"prompt": PREFIX, "suffix": "\n", "max_tokens": 30, "stop_mode": "auto"}
    assert client.post("/v1/completions", json=body).json()["choices"][0]["text"] == " b"


def test_openai_stream_is_sse_ending_with_done(client):
    body = {"prompt": PREFIX, "suffix": "\n", "max_tokens": 30, "stream": True}
    with client.stream("POST", "/v1/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == SCRIPT
    assert len(chunks) > 2  # streamed piece by piece, not one chunk at the end
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_copilot_alias(client):
    body = {"prompt": PREFIX, "suffix": "\n", "max_tokens": 30}
    response = client.post("/v1/engines/codegen/completions", json=body)
    assert response.json()["choices"][0]["text"] == SCRIPT


def test_infill(client):
    body = {"input_prefix": PREFIX, "input_suffix": "\n", "n_predict": 20}
    response = client.post("/infill", json=body).json()
    assert response["content"] == " b" and response["stop_type"] == "word"
    assert response["tokens_evaluated"] > 0 and response["timings"]["predicted_n"] >= 1
    body = {**body, "stop_mode": "none"}
    response = client.post("/infill", json=body).json()
    assert response["content"] == SCRIPT and response["stop_type"] == "eos"
    body = {**body, "n_predict": 1}
    assert client.post("/infill", json=body).json()["stop_type"] == "limit"


def test_infill_n_indent_stops_at_the_first_line_indented_less(client):
    """llama.cpp's n_indent: `print(add)` (column 0) is indented less than 4 and ends the
    completion, with code-aware stopping off."""
    body = {"input_prefix": PREFIX, "input_suffix": "\n", "stop_mode": "none", "n_indent": 4}
    response = client.post("/infill", json=body).json()
    assert response["content"] == " b" and response["stop_type"] == "word"


def test_infill_stream(client):
    body = {"input_prefix": PREFIX, "input_suffix": "\n", "stop_mode": "none", "stream": True}
    with client.stream("POST", "/infill", json=body) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line]
    assert "".join(c["content"] for c in chunks) == SCRIPT and chunks[-1]["stop"] is True


def test_models_lists_the_served_model(client):
    models = client.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["model"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_health_has_tabby_fields(client, method):
    health = client.request(method, "/v1/health").json()
    assert health["model"] == "model" and health["device"] == "cpu"
    assert health["cpu_count"] >= 1 and isinstance(health["cuda_devices"], list)
    assert health["arch"] and health["cpu_info"]
    assert health["version"]["git_describe"].startswith("v0.9.0")
    assert client.get("/v1beta/server_setting").json() == {"disable_client_side_telemetry": True}


def metric(client, name: str, **labels) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_events_are_counted(client):
    before = metric(client, "completion_events_total", type="select", select_kind="line")
    event = {"type": "select", "completion_id": "cmpl-1", "choice_index": 0, "view_id": "v"}
    assert client.post("/v1/events?select_kind=line", json=event).status_code == 200
    after = metric(client, "completion_events_total", type="select", select_kind="line")
    assert after == before + 1


def test_metrics_have_millisecond_buckets_and_engine_series(client):
    tabby(client)
    text = client.get("/metrics").text
    assert (
        'http_request_duration_seconds_bucket{le="0.001",method="POST",route="/v1/completions"'
        in text
    )
    assert "engine_time_to_first_token_seconds_bucket" in text
    assert metric(client, "engine_generated_tokens_total") > 0


def test_token_healing_does_not_repeat_the_cursor_characters(client):
    # The prefix ends in a space: the prompt is backed up by that token, the model's " b" spells
    # it again, and the response leaves it out, so the editor shows "a + b", not "a +  b".
    body = tabby(client, prefix=PREFIX + " ", debug_options={"return_prompt": True})
    assert body["choices"][0]["text"] == "b"
    assert PREFIX + "<fim_suffix>" in body["debug_data"]["prompt"]


def test_both_completion_bodies_are_in_the_openapi_schema():
    """/v1/completions is typed: a client generated from the schema knows both bodies."""
    from fastapi import FastAPI

    from service.api.completions import router

    app = FastAPI()
    app.include_router(router)
    schema = app.openapi()
    for path in ("/v1/completions", "/v1/engines/{engine}/completions"):
        body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        refs = {option["$ref"].rsplit("/", 1)[1] for option in body["schema"]["oneOf"]}
        assert refs == {"TabbyCompletionRequest", "OpenAICompletionRequest"}
