"""Real clients against the real server process: the `openai` Python client and `tabby-agent`.

The server serves the scripted checkpoint (tests/support/scripted_checkpoint.py), so the text each
client shows is known exactly: it can only have come from our server's engine.
`tabby-agent` 1.5.0 is installed by `npm ci --prefix tests/node`.
"""

import json
import os
import queue
import subprocess
import threading
import time

import httpx
import openai
import pytest

from tests.support.scripted_checkpoint import SCRIPT, build_scripted_checkpoint
from tests.support.service_process import REPO, running_server

PREFIX = "def add(a, b):\n    return a +"
TABBY_AGENT = REPO / "tests" / "node" / "node_modules" / "tabby-agent" / "dist" / "cli.js"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    model = build_scripted_checkpoint(tmp_path_factory.mktemp("scripted") / "model")
    with running_server(model) as url:
        yield url


@pytest.fixture
def client(base_url):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)


def test_openai_client_completion(client):
    completion = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt=PREFIX, suffix="\n", max_tokens=30
    )
    assert completion.choices[0].text == SCRIPT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 9


def test_openai_client_streaming(client):
    stream = client.completions.create(
        model="any", prompt=PREFIX, suffix="\n", max_tokens=30, stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks) == SCRIPT
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_openai_client_suffix_and_code_stopping(client):
    completion = client.completions.create(
        model="any", prompt=PREFIX, suffix="\n", max_tokens=30, extra_body={"stop_mode": "auto"}
    )
    assert completion.choices[0].text == " b"
    limited = client.completions.create(model="any", prompt=PREFIX, suffix="\n", max_tokens=2)
    assert limited.choices[0].text == " b\n" and limited.choices[0].finish_reason == "length"


def test_openai_client_models_and_errors(client):
    assert [m.id for m in client.models.list()] == ["model"]
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.completions.create(model="any", prompt="", max_tokens=5)


class LspClient:
    """Just enough of an editor's LSP side: framed JSON-RPC over the agent's stdin/stdout."""

    def __init__(self, command: list[str], env: dict[str, str]):
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.messages: queue.Queue[dict] = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self.read_messages, daemon=True).start()

    def read_messages(self) -> None:
        stdout = self.process.stdout
        while True:
            headers = {}
            while (line := stdout.readline().decode().strip()) != "":
                name, value = line.split(":", 1)
                headers[name.lower()] = value.strip()
            if not headers:
                return  # the agent exited
            self.messages.put(json.loads(stdout.read(int(headers["content-length"]))))

    def send(self, message: dict) -> None:
        data = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
        self.process.stdin.flush()

    def notify(self, method: str, params: dict) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: dict, timeout_s: float = 30) -> dict:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                message = self.messages.get(timeout=0.2)
            except queue.Empty:
                continue
            if "method" in message and "id" in message:  # the agent asks the editor something
                self.send({"id": message["id"], "result": None})
            elif message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]
        raise TimeoutError(f"no answer to {method} in {timeout_s} s")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def tabby_agent(base_url, tmp_path):
    if not TABBY_AGENT.exists():
        pytest.fail("tabby-agent is not installed: run `npm ci --prefix tests/node`")
    config = tmp_path / ".tabby-client" / "agent" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f'[server]\nendpoint = "{base_url}"\ntoken = "e2e-token"\n\n'
        "[anonymousUsageTracking]\ndisable = true\n"
    )
    agent = LspClient(
        ["node", str(TABBY_AGENT), "--lsp", "--stdio"], {**os.environ, "HOME": str(tmp_path)}
    )
    yield agent
    agent.close()


def completion_requests(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("http_request_duration_seconds_count")
        and 'route="/v1/completions"' in line
        and 'status="200"' in line
    )


def test_tabby_agent_completes_from_our_server(base_url, tabby_agent, tmp_path):
    before = completion_requests(base_url)
    initialized = tabby_agent.request(
        "initialize",
        {
            "processId": os.getpid(),
            "rootUri": tmp_path.as_uri(),
            "clientInfo": {"name": "e2e-editor"},
            "capabilities": {"textDocument": {"completion": {}}},
        },
    )
    assert initialized["serverInfo"] == {"name": "tabby-agent", "version": "1.5.0"}
    tabby_agent.notify("initialized", {})
    uri = (tmp_path / "add.py").as_uri()
    document = PREFIX + "\n\nprint(add(1, 2))\n"
    tabby_agent.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": document}},
    )
    position = {"line": 1, "character": len("    return a +")}
    result = tabby_agent.request(
        "textDocument/completion",
        {"textDocument": {"uri": uri}, "position": position, "context": {"triggerKind": 1}},
    )
    (item,) = result["items"]
    # The script up to where code-aware stopping ends the function's block.
    assert item["textEdit"]["newText"] == " b"
    assert item["textEdit"]["range"] == {"start": position, "end": position}
    assert item["data"]["completionId"].startswith("cmpl-")
    assert completion_requests(base_url) == before + 1
