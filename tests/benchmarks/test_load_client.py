"""The benchmarks' keep-alive client against a real socket server: answers in order, one
connection per editor session, a request again when the server closed an idle connection, and a
refused request raised with its answer."""

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from benchmarks.load_client import KeepAliveClient, Post


class Server:
    """HTTP/1.1 on a real socket that echoes each body's `n` with the connection's number and
    its request count; after `requests_per_connection` answers it closes the connection unasked,
    as uvicorn and llama-server close idle ones."""

    def __init__(self, requests_per_connection: int):
        self.requests_per_connection = requests_per_connection
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self.run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def run(self, ready: threading.Event) -> None:
        async def serve() -> None:
            server = await asyncio.start_server(self.connection, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await server.serve_forever()

        self.loop.run_until_complete(serve())

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        for count in range(1, self.requests_per_connection + 1):
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            length = int(head.lower().split("content-length: ")[1].split("\r\n")[0])
            body = json.loads(await reader.readexactly(length))
            status = "418 I'm a teapot" if body.get("refuse") else "200 OK"
            answer = json.dumps({"n": body["n"], "connection": number, "count": count}).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(answer)}\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
        writer.close()


@contextmanager
def client_of(server: Server) -> Iterator[KeepAliveClient]:
    client = KeepAliveClient(server.port)
    try:
        yield client
    finally:
        client.close()


def test_answers_come_in_order_one_connection_per_session():
    server = Server(requests_per_connection=100)
    with client_of(server) as client:
        for _ in range(3):
            posts = [Post(f"session-{i % 4}", "/x", {"n": i}) for i in range(8)]
            answers = client.post_all(posts)
            assert [answer["n"] for _, answer in answers] == list(range(8))
            assert all(latency > 0 for latency, _ in answers)
    assert server.connections == 4


def test_a_connection_the_server_closed_is_opened_again():
    with client_of(Server(requests_per_connection=1)) as client:
        for n in range(3):
            ((_, answer),) = client.post_all([Post("session", "/x", {"n": n})])
            assert answer == {"n": n, "connection": n + 1, "count": 1}


def test_a_refused_request_raises_with_its_answer():
    with (
        client_of(Server(requests_per_connection=10)) as client,
        pytest.raises(RuntimeError, match="HTTP 418"),
    ):
        client.post_all([Post("session", "/x", {"n": 1, "refuse": True})])
