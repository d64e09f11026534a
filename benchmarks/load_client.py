"""The long-file benchmarks' HTTP client: light enough to share the server's machine.

The benchmarks run a server and its load on the same two cores. From a thread pool, httpx took
~3 ms of the client's CPU per request (0.65 s per 16-session run of 12 rounds), and CPU taken from
the server's two cores slows its steps by more than its share: the engine's two OpenMP threads
wait for each other, so a process burning a sixth of one core beside the engine alone made its
steps a third slower. Editors send their requests from other machines. This client comes as close
to that as one on the same machine can: bodies encoded before the clock starts, one keep-alive
connection per editor session (as an editor plugin keeps), one event loop, no threads. Every
server measured with it (ours, llama-server) gets the same client.
"""

import asyncio
import json
import time
from dataclasses import dataclass, field

Answer = tuple[float, dict]  # (seconds from sending to the whole answer read, its JSON)


@dataclass(frozen=True)
class Post:
    connection: str  # whose keep-alive connection carries it (an editor session)
    path: str
    body: dict
    headers: dict[str, str] = field(default_factory=dict)


class KeepAliveClient:
    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.host, self.port = host, port
        self.loop = asyncio.new_event_loop()
        self.connections: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        self.turns: dict[str, asyncio.Lock] = {}  # one request at a time per connection

    def post_all(self, posts: list[Post]) -> list[Answer]:
        """Send `posts` at once (those of one connection one after another, as an editor does);
        each one's latency and JSON answer, in order. Anything but a 200 raises, with the
        answer's text."""
        wires = [self.encode(post) for post in posts]

        async def at_once() -> list[Answer]:
            pairs = zip(posts, wires, strict=True)
            return await asyncio.gather(*(self.exchange(p.connection, w) for p, w in pairs))

        return self.loop.run_until_complete(at_once())

    def encode(self, post: Post) -> bytes:
        body = json.dumps(post.body).encode()
        headers = {"host": self.host, "content-type": "application/json", **post.headers}
        headers["content-length"] = str(len(body))
        head = f"POST {post.path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        return (head + "\r\n").encode() + body

    async def exchange(self, connection: str, wire: bytes) -> Answer:
        async with self.turns.setdefault(connection, asyncio.Lock()):
            return await self.send(connection, wire)

    async def send(self, connection: str, wire: bytes) -> Answer:
        reader, writer = await self.connection(connection)
        start = time.perf_counter()
        try:
            writer.write(wire)
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            if isinstance(error, asyncio.IncompleteReadError) and error.partial:
                raise
            # The server closed the connection while it was idle (uvicorn and llama-server do
            # after 5 s): the request again, on a fresh one.
            self.connections.pop(connection)
            reader, writer = await self.connection(connection)
            start = time.perf_counter()
            writer.write(wire)
            head = await reader.readuntil(b"\r\n\r\n")
        status, length = read_head(head)
        body = await reader.readexactly(length)
        latency = time.perf_counter() - start
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body[:500]!r}")
        return latency, json.loads(body)

    async def connection(self, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if name not in self.connections:
            self.connections[name] = await asyncio.open_connection(self.host, self.port)
        return self.connections[name]

    def close(self) -> None:
        for _, writer in self.connections.values():
            writer.close()
        self.connections.clear()
        self.loop.close()


def read_head(head: bytes) -> tuple[int, int]:
    """(status, content length) of a response's head; a body without a length is not read."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    lengths = [v for k, v in fields.items() if k.strip().lower() == "content-length"]
    if not lengths:
        raise ValueError(f"an answer without Content-Length: {lines[:8]}")
    return status, int(lengths[0])
