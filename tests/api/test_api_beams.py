"""Beam search over real HTTP: the server process (`python -m service serve`) on a tiny random
checkpoint, the `openai` client's `extra_body`, and the refusals a plugin author can act on.

Expected choices come from an engine in this process on the same checkpoint, given the prompt the
server builds (same builder, same budget): the server must return the engine's ranked candidates.
"""

import dataclasses
import json

import httpx
import openai
import pytest

from service.completion.plan import sampling_params
from service.engine import EngineConfig, LLMEngine, SamplingParams
from service.prompt.builder import CompletionInput, Prompt, PromptBuilder
from service.prompt.window import Budget
from service.settings import Settings
from tests.support.service_process import running_server
from tests.support.tiny_checkpoints import build_checkpoint

PROMPT = "def fibonacci(n):\n    if n < 2:\n        return n\n"
PROMPTS = [PROMPT, "import os\n\nclass Config:\n", "for i in range(10):\n", "x = 1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("gpt2"), "gpt2", n_positions=512)


@pytest.fixture(scope="module")
def base_url(checkpoint):
    # float32 like the in-process engine the answers are compared with (auto may pick bf16);
    # the raw engine's texts, so no semantic checks (a random model's text rarely passes them)
    flags = ("--device", "cpu", "--dtype", "float32", "--num-threads", "1", "--no-semantic")
    with running_server(checkpoint, *flags) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def engine(checkpoint):
    return LLMEngine(EngineConfig(model_path=checkpoint, num_threads=1))


def server_prompt(engine: LLMEngine, request: CompletionInput, max_tokens: int) -> Prompt:
    settings = Settings()
    budget = Budget(settings.prefix_tokens, settings.suffix_tokens, settings.snippet_tokens)
    builder = PromptBuilder(engine.tokenizer, budget, context_tokens=engine.max_positions)
    return builder.build(request, max_tokens)


def run(engine: LLMEngine, prompt: Prompt, params: SamplingParams) -> list[str]:
    """The engine's result texts: ranked distinct candidates, or the one sampled text."""
    engine.add_request("expected", prompt.token_ids, params)
    seq = engine.seqs["expected"]
    while engine.has_work():
        engine.step()
    return [c.text for c in seq.candidates] or [seq.text]


def expected_candidates(engine, text: str, max_tokens: int, **beam) -> list[str]:
    prompt = server_prompt(engine, CompletionInput(prefix=text), max_tokens)
    params = SamplingParams(max_tokens=max_tokens, forced_prefix=prompt.forced_prefix, **beam)
    return run(engine, prompt, params)


def test_openai_client_n_best_beams(client, engine):
    """n=3 of a 4-beam search: one engine job, its three best distinct candidates in rank order."""
    response = client.completions.create(
        model="any", prompt=PROMPT, max_tokens=8, n=3, extra_body={"num_beams": 4}
    )
    texts = [c.text for c in response.choices]
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert len(set(texts)) == 3
    assert texts == expected_candidates(engine, PROMPT, 8, num_beams=4)[:3]
    assert response.usage.completion_tokens > 0


def test_openai_client_diverse_beams(client, engine):
    beam = {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.5}
    response = client.completions.create(
        model="any", prompt=PROMPT, max_tokens=6, n=4, temperature=0, extra_body=beam
    )
    expected = expected_candidates(engine, PROMPT, 6, **beam)
    assert [c.text for c in response.choices] == expected[:4]


def test_n_larger_than_num_beams_widens_the_search(base_url, engine):
    body = {"prompt": PROMPT, "max_tokens": 6, "n": 4, "num_beams": 2, "length_penalty": 0.5}
    choices = httpx.post(f"{base_url}/v1/completions", json=body, timeout=60).json()["choices"]
    expected = expected_candidates(engine, PROMPT, 6, num_beams=4, length_penalty=0.5)
    assert [c["text"] for c in choices] == expected[:4]


def test_a_beam_request_never_gets_the_greedy_cached_answer(base_url, engine):
    """The same prompt asked greedily first (and so cached), then with beams."""
    for text in PROMPTS:  # one where the best beam and the greedy path differ
        greedy = expected_candidates(engine, text, 8)[0]
        best_beam = expected_candidates(engine, text, 8, num_beams=4)[0]
        if greedy != best_beam:
            break
    else:
        pytest.fail("no prompt where beam search and greedy decoding differ")
    url, body = f"{base_url}/v1/completions", {"prompt": text, "max_tokens": 8, "temperature": 0}
    assert httpx.post(url, json=body, timeout=60).json()["choices"][0]["text"] == greedy
    assert httpx.post(url, json=body, timeout=60).json()["choices"][0]["text"] == greedy  # cached
    beam = httpx.post(url, json={**body, "num_beams": 4}, timeout=60).json()
    assert [c["text"] for c in beam["choices"]] == [best_beam]


def test_code_aware_stopping_and_stop_strings_apply_to_every_beam(base_url):
    url = f"{base_url}/v1/completions"
    # Code after the cursor on its line: single-line completions.
    body = {"prompt": "x = ", "suffix": " # sum\n", "stop_mode": "auto", "max_tokens": 12}
    choices = httpx.post(url, json={**body, "n": 4, "num_beams": 4}, timeout=60).json()["choices"]
    assert choices and all("\n" not in c["text"] for c in choices)
    body = {"prompt": PROMPT, "max_tokens": 12, "stop": ["\n"], "n": 4, "num_beams": 4}
    choices = httpx.post(url, json=body, timeout=60).json()["choices"]
    assert len(choices) > 1 and all("\n" not in c["text"] for c in choices)


# A cursor where "line" ends beams at different lengths: 3 beams at 0.5 pick a 3-character
# beam, at 1.0 a long one, and both differ from the greedy line.
TABBY_LINE = {"language": "python", "segments": {"prefix": "x = 1", "suffix": "\n"}}
OPENAI_LINE = {
    "prompt": "x = 1",
    "suffix": "\n",
    "stop_mode": "line",
    "max_tokens": 64,
    "temperature": 0,
}
INFILL_LINE = {"input_prefix": "x = 1", "input_suffix": "\n", "stop_mode": "line", "n_predict": 64}
LINE_INPUT = CompletionInput(prefix="x = 1", suffix="\n")


def best_line_beam(
    engine: LLMEngine, language: str | None, length_penalty: float, stop_mode: str = "line"
) -> str:
    """The engine's best of 3 beams on the server's prompt for LINE_INPUT, in `stop_mode`."""
    prompt = server_prompt(engine, dataclasses.replace(LINE_INPUT, language=language), 64)
    greedy = sampling_params(
        prompt, max_tokens=64, temperature=0.0, top_p=1.0, seed=None, stop=[], stop_mode=stop_mode
    )
    params = dataclasses.replace(greedy, num_beams=3, length_penalty=length_penalty)
    return run(engine, prompt, params)[0]


@pytest.mark.parametrize(("sent", "length_penalty"), [({}, 0.5), ({"length_penalty": 1.0}, 1.0)])
def test_tabby_num_beams_returns_the_best_beam(base_url, engine, sent, length_penalty):
    body = TABBY_LINE | {"stop_mode": "line", "num_beams": 3} | sent
    response = httpx.post(f"{base_url}/v1/completions", json=body, timeout=60).json()
    expected = best_line_beam(engine, "python", length_penalty)
    assert response["choices"] == [{"index": 0, "text": expected}]


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        ({"num_beams": 4, "temperature": 0.7}, "temperature", "send temperature 0"),
        ({"num_beams": 9}, "num_beams", "at most 8"),
        ({"num_beams": 2, "n": 9}, "n", "at most 8"),
        ({"num_beams": 4, "stream": True}, "stream", "cannot stream"),
        ({"num_beams": 4, "num_beam_groups": 3}, "num_beams", "must divide"),
        ({"num_beams": 4, "diversity_penalty": 1.0}, "num_beams", "num_beam_groups of 2"),
        ({"length_penalty": 2.0}, "length_penalty", "send num_beams > 1"),
        ({"num_beams": 2, "prompt": ["a", "b"]}, "prompt", "one prompt"),
        ({"num_beams": 0}, "num_beams", "greater than or equal to 1"),
        ({"num_beams": "4"}, "num_beams", "valid integer"),
    ],
)
def test_refusals(base_url, fields, param, message):
    body = {"prompt": PROMPT, "max_tokens": 4, **fields}
    response = httpx.post(f"{base_url}/v1/completions", json=body, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and message in error["message"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"num_beams": 2, "temperature": 0.8}, "temperature"),
        ({"length_penalty": 0.0}, "length_penalty"),
    ],
)
def test_tabby_refusals(base_url, fields, param):
    body = {"segments": {"prefix": PROMPT}, **fields}
    response = httpx.post(f"{base_url}/v1/completions", json=body, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and param in error["message"]


@pytest.fixture(scope="module")
def line_beams_url(checkpoint):
    flags = ("--device", "cpu", "--dtype", "float32", "--num-threads", "1", "--line-num-beams", "3",
             "--no-semantic")  # fmt: skip
    with running_server(checkpoint, *flags) as url:
        yield url


def answer(base_url: str, path: str, body: dict) -> str:
    if body.get("stream"):
        with httpx.stream("POST", base_url + path, json=body, timeout=60) as response:
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: {")]
        return "".join(json.loads(event)["choices"][0]["text"] for event in events)
    reply = httpx.post(base_url + path, json=body, timeout=60).json()
    return reply["content"] if path == "/infill" else reply["choices"][0]["text"]


@pytest.mark.parametrize(
    ("path", "body", "language"),
    [
        ("/v1/completions", TABBY_LINE | {"stop_mode": "line"}, "python"),
        ("/v1/completions", OPENAI_LINE, None),
        ("/infill", INFILL_LINE, None),
    ],
)
def test_line_num_beams_searches_greedy_one_line_requests(
    base_url, line_beams_url, engine, path, body, language
):
    """A server started with --line-num-beams 3 answers a greedy one-line request with the best
    of 3 beams at length penalty 0.5, where the plain server answers greedily."""
    best_beam = best_line_beam(engine, language, 0.5)
    assert answer(base_url, path, body) != best_beam  # the test can tell the two apart
    assert answer(line_beams_url, path, body) == best_beam


@pytest.mark.parametrize(
    "body",
    [
        TABBY_LINE | {"stop_mode": "block"},
        TABBY_LINE | {"stop_mode": "line", "num_beams": 2},
        OPENAI_LINE | {"stream": True},
        OPENAI_LINE | {"temperature": 0.7, "seed": 1},
        OPENAI_LINE | {"n": 2, "temperature": 0},
    ],
)
def test_line_num_beams_leaves_other_requests_as_they_were(base_url, line_beams_url, body):
    """Blocks, requests that ask for their own beams or for sampling, several choices and
    streams are answered as by a server without --line-num-beams."""
    assert answer(line_beams_url, "/v1/completions", body) == answer(
        base_url, "/v1/completions", body
    )


@pytest.fixture(scope="module")
def block_beams_url(checkpoint):
    flags = ("--device", "cpu", "--dtype", "float32", "--num-threads", "1", "--block-num-beams",
             "3", "--no-semantic")  # fmt: skip
    with running_server(checkpoint, *flags) as url:
        yield url


@pytest.mark.parametrize(
    ("path", "body", "language"),
    [
        ("/v1/completions", TABBY_LINE | {"stop_mode": "block"}, "python"),
        ("/v1/completions", OPENAI_LINE | {"stop_mode": "block"}, None),
        ("/infill", INFILL_LINE | {"stop_mode": "block"}, None),
    ],
)
def test_block_num_beams_searches_greedy_block_requests(
    base_url, block_beams_url, engine, path, body, language
):
    """A server started with --block-num-beams 3 answers a greedy block request with the best
    of 3 beams at length penalty 0.5, where the plain server answers greedily."""
    best_beam = best_line_beam(engine, language, 0.5, stop_mode="block")
    assert answer(base_url, path, body) != best_beam  # the test can tell the two apart
    assert answer(block_beams_url, path, body) == best_beam


@pytest.mark.parametrize(
    "body",
    [
        TABBY_LINE | {"stop_mode": "line"},
        OPENAI_LINE | {"stop_mode": "none"},
        OPENAI_LINE | {"stop_mode": "block", "stream": True},
        OPENAI_LINE | {"stop_mode": "block", "temperature": 0.7, "seed": 1},
    ],
)
def test_block_num_beams_leaves_other_requests_as_they_were(base_url, block_beams_url, body):
    """Single lines, the model's raw text, streams and sampling are answered as by a server
    without --block-num-beams."""
    assert answer(block_beams_url, "/v1/completions", body) == answer(
        base_url, "/v1/completions", body
    )
