"""Load test: editor users who type like people, against the Tabby endpoint.

Each simulated user opens one of this repository's Python files at a random line and types the
next lines in bursts of 1 to 8 characters, 60 to 200 ms per character (roughly 60 to 200 words
a minute). After each burst it pauses for a debounce (150 to 400 ms, tabby-agent waits 100 to
1000 ms) and asks for a completion of what is on screen, with its editor session in
`X-Session-Id` so the server aborts the request it superseded. Then it reports the suggestion as
viewed, and as selected when it matches what the user types next, else dismissed.

Run against a server (`make serve` in another terminal):

    .venv/bin/locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 \\
        --headless -u 16 -r 4 -t 60s

Latency targets for the completion request (the whole HTTP round trip, measured by locust):
p50 <= 200 ms and p95 <= 500 ms at 16 users on the CPU default checkpoint; no error other than
503 (overload, with Retry-After). The run exits with status 1 when a target is missed.
"""

import random
import uuid
from pathlib import Path

import gevent
from locust import HttpUser, between, events, task

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted((REPO / "service").rglob("*.py"))
TARGET_P50_MS = 200
TARGET_P95_MS = 500
COMPLETION = "/v1/completions [tabby]"


class EditorUser(HttpUser):
    wait_time = between(0.06, 0.2)  # between keystroke bursts, on top of the debounce

    def on_start(self) -> None:
        self.session_id = f"locust-{uuid.uuid4()}"
        self.open_file()

    def open_file(self) -> None:
        lines = random.choice(SOURCES).read_text().splitlines(keepends=True)
        start = random.randrange(max(1, len(lines) - 20))
        self.text = "".join(lines)
        self.cursor = sum(len(line) for line in lines[:start])
        self.typed_until = self.cursor + sum(len(line) for line in lines[start : start + 20])

    @task
    def type_and_complete(self) -> None:
        if self.cursor >= self.typed_until:
            self.open_file()
        burst = random.randint(1, 8)
        typing_s = sum(random.uniform(0.06, 0.2) for _ in range(burst))
        self.cursor = min(self.cursor + burst, self.typed_until)
        debounce_s = random.uniform(0.15, 0.4)
        gevent.sleep(typing_s + debounce_s)  # users are gevent greenlets
        self.complete()

    def complete(self) -> None:
        prefix, upcoming = self.text[: self.cursor], self.text[self.cursor : self.typed_until]
        # What is on screen: the rest of the file after the part still to be typed.
        suffix = self.text[self.typed_until :]
        body = {
            "language": "python",
            "segments": {"prefix": prefix[-4000:], "suffix": suffix[:2000]},
        }
        with self.client.post(
            "/v1/completions",
            json=body,
            headers={"X-Session-Id": self.session_id},
            name=COMPLETION,
            catch_response=True,
        ) as response:
            if response.status_code == 503:
                response.success()  # overload is an answer, not a failure: the editor retries
                return
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            completion = response.json()
        text = completion["choices"][0]["text"] if completion["choices"] else ""
        if text:
            kind = "select" if text.strip() and upcoming.startswith(text) else "dismiss"
            for event_type in ("view", kind):
                event = {"type": event_type, "completion_id": completion["id"], "choice_index": 0}
                self.client.post("/v1/events", json=event, name="/v1/events")


@events.quitting.add_listener
def check_latency_targets(environment, **_kwargs) -> None:
    stats = environment.stats.get(COMPLETION, "POST")
    if stats.num_requests == 0:
        return
    p50, p95 = stats.get_response_time_percentile(0.5), stats.get_response_time_percentile(0.95)
    missed = p50 > TARGET_P50_MS or p95 > TARGET_P95_MS or stats.num_failures > 0
    print(
        f"completion latency p50 {p50:.0f} ms (target {TARGET_P50_MS}), p95 {p95:.0f} ms "
        f"(target {TARGET_P95_MS}), failures {stats.num_failures}: "
        f"{'MISSED' if missed else 'met'}"
    )
    if missed:
        environment.process_exit_code = 1
