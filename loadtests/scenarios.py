"""Locust users of a code-completion server, for the runner (python -m loadtests run).

Weights: most users type (bursts, debounce, X-Session-Id, view/select/dismiss events, like
loadtests/locustfile.py), some of them backspace and re-type (the suggestion cache's hits) and
jump to another file; fewer ask for several choices by hand, go through the `openai` client, or
stream. Files are a mix of the Python standard library and this repository.

A refusal (503 or 429 with Retry-After) is recorded under the name "refused", apart from the
completions: it is neither a failure nor a latency sample. A 503/429 without Retry-After fails.
"""

import random
import sysconfig
import time
import uuid
from pathlib import Path

import gevent
from locust import HttpUser, User, between, events, task

REPO = Path(__file__).resolve().parent.parent
STDLIB = Path(sysconfig.get_paths()["stdlib"])
REFUSED = "refused"
COMPLETION = "completion"


def file_mix(seed: int = 0) -> list[Path]:
    """Standard-library modules (code we did not write) and our own, about 3:1."""
    stdlib = sorted(p for p in STDLIB.glob("*.py") if 2_000 < p.stat().st_size < 200_000)
    ours = sorted((REPO / "service").rglob("*.py"))
    rng = random.Random(seed)
    return rng.sample(stdlib, min(len(stdlib), 3 * len(ours))) + ours


SOURCES = file_mix()


def blank(prefix: str, suffix: str) -> bool:
    """No code on either side of the cursor (an empty new file, the cursor at its top): a plugin
    waits for the first keystroke, and the server would refuse it (400, docs/api.md)."""
    return not prefix.strip() and not suffix.strip()


def classify(response) -> str | None:
    """'refused', 'ok' or None (a failure) for a completion response."""
    if response.status_code in (503, 429):
        return REFUSED if response.headers.get("Retry-After") else None
    return "ok" if response.status_code == 200 else None


def post_completion(client, body: dict, headers: dict, name: str = COMPLETION) -> dict | None:
    with client.post(
        "/v1/completions", json=body, headers=headers, name=name, catch_response=True
    ) as response:
        outcome = classify(response)
        if outcome == REFUSED:
            response.request_meta["name"] = REFUSED
            response.success()
            return None
        if outcome is None:
            response.failure(f"{response.status_code}: {response.text[:200]}")
            return None
        return response.json()


class TypingUser(HttpUser):
    """Types the next lines of a file in bursts; backspaces and re-types; jumps files."""

    weight = 10
    wait_time = between(0.06, 0.2)

    def on_start(self) -> None:
        self.session_id = f"load-{uuid.uuid4()}"
        self.open_file()

    def open_file(self) -> None:
        lines = random.choice(SOURCES).read_text(errors="replace").splitlines(keepends=True)
        start = random.randrange(max(1, len(lines) - 20))
        self.text = "".join(lines)
        self.cursor = sum(len(line) for line in lines[:start])
        self.typed_until = self.cursor + sum(len(line) for line in lines[start : start + 20])

    @task(8)
    def type_and_complete(self) -> None:
        if self.cursor >= self.typed_until:
            self.open_file()
        burst = random.randint(1, 8)
        gevent.sleep(sum(random.uniform(0.06, 0.2) for _ in range(burst)))
        self.cursor = min(self.cursor + burst, self.typed_until)
        gevent.sleep(random.uniform(0.15, 0.4))  # debounce
        self.complete()

    @task(2)
    def backspace_and_retype(self) -> None:
        """Delete a few characters, pause, type them again: the same screen as before."""
        if self.cursor == 0:  # nothing to erase at the top of the file
            return
        erased = random.randint(1, min(6, self.cursor))
        self.cursor -= erased
        gevent.sleep(random.uniform(0.15, 0.4))
        self.complete()
        gevent.sleep(sum(random.uniform(0.06, 0.2) for _ in range(erased)))
        self.cursor += erased
        gevent.sleep(random.uniform(0.15, 0.4))
        self.complete()

    @task(1)
    def jump_to_another_file(self) -> None:
        self.open_file()
        gevent.sleep(random.uniform(0.3, 1.0))
        self.complete()

    def body(self) -> tuple[dict, str]:
        prefix, upcoming = self.text[: self.cursor], self.text[self.cursor : self.typed_until]
        suffix = self.text[self.typed_until :]
        body = {
            "language": "python",
            "segments": {"prefix": prefix[-4000:], "suffix": suffix[:2000]},
        }
        return body, upcoming

    def complete(self) -> None:
        body, upcoming = self.body()
        if blank(body["segments"]["prefix"], body["segments"]["suffix"]):
            return
        completion = post_completion(self.client, body, {"X-Session-Id": self.session_id})
        if not completion or not completion["choices"]:
            return
        text = completion["choices"][0]["text"]
        if text:
            kind = "select" if text.strip() and upcoming.startswith(text) else "dismiss"
            for event_type in ("view", kind):
                event = {"type": event_type, "completion_id": completion["id"], "choice_index": 0}
                self.client.post("/v1/events", json=event, name="/v1/events")


class ManualUser(TypingUser):
    """Types like the others and, now and then, asks by hand (a shortcut) for three choices
    through the OpenAI body."""

    weight = 1

    @task
    def ask_for_choices(self) -> None:
        gevent.sleep(random.uniform(2, 5))
        if self.cursor >= self.typed_until:
            self.open_file()
        self.cursor = min(self.cursor + random.randint(5, 40), self.typed_until)
        body = {
            "prompt": self.text[: self.cursor][-4000:],
            "suffix": self.text[self.typed_until :][:2000],
            "max_tokens": 32,
            "n": 3,
            "temperature": 0.8,
        }
        if blank(body["prompt"], body["suffix"]):
            return
        post_completion(self.client, body, {"X-Session-Id": self.session_id}, name="manual n=3")


class StreamingUser(TypingUser):
    """Types like the others, each completion streamed (OpenAI body, server-sent events)."""

    weight = 1

    def complete(self) -> None:
        body, _ = self.body()
        if blank(body["segments"]["prefix"], body["segments"]["suffix"]):
            return
        openai_body = {
            "prompt": body["segments"]["prefix"],
            "suffix": body["segments"]["suffix"],
            "max_tokens": 32,
            "temperature": 0,
            "stream": True,
        }
        with self.client.post(
            "/v1/completions",
            json=openai_body,
            headers={"X-Session-Id": self.session_id},
            name="stream",
            stream=True,
            catch_response=True,
        ) as response:
            outcome = classify(response)
            if outcome == REFUSED:
                response.request_meta["name"] = REFUSED
                response.success()
                return
            if outcome is None:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            events_text = response.content.decode()
            if '"error"' in events_text or "data: [DONE]" not in events_text:
                response.failure(f"stream did not finish: {events_text[-200:]}")


class OpenAIClientUser(User):
    """The `openai` Python client, as Copilot-style plugins call the legacy completions API."""

    weight = 1
    wait_time = between(1, 3)

    def on_start(self) -> None:
        import openai

        self.openai = openai.OpenAI(
            base_url=f"{self.host}/v1", api_key="unused", max_retries=0, timeout=30
        )

    @task
    def complete(self) -> None:
        import openai

        lines = random.choice(SOURCES).read_text(errors="replace").splitlines(keepends=True)
        cut = random.randrange(1, max(2, len(lines)))
        prompt = "".join(lines[max(0, cut - 60) : cut])
        if blank(prompt, ""):
            return
        start = time.perf_counter()
        exception = None
        name = "openai client"
        try:
            self.openai.completions.create(
                model="default", prompt=prompt, max_tokens=24, temperature=0
            )
        except (openai.RateLimitError, openai.InternalServerError) as error:
            if error.response.headers.get("Retry-After"):
                name = REFUSED
            else:
                exception = error
        except openai.OpenAIError as error:
            exception = error
        events.request.fire(
            request_type="POST",
            name=name,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=0,
            exception=exception,
            context={},
        )
