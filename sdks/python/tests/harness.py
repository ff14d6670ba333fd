"""A real `switchboard serve` process on a free port with its own data directory, and a TCP
proxy whose connections a test can cut (a network failure the client does not see coming)."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import threading
from pathlib import Path

import switchboard

REPO = Path(__file__).resolve().parents[3]
BIN = Path(os.environ.get("SWITCHBOARD_BIN") or REPO / "target" / "debug" / "switchboard")
# Longest wait for something that should happen (never a sleep: an upper bound on a wait).
WAIT = 10.0
# Reconnect fast in tests.
FAST = switchboard.ClientOptions(backoff=switchboard.Backoff(initial=0.02, max=0.2))


class ServerProcess:
    """`switchboard serve --listen 127.0.0.1:PORT --data-dir DIR`; restartable on the same port
    and directory."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = workdir / "data"
        self.log_path = workdir / "server.log"
        self.env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn"), **(env or {})}
        self.port = 0
        self.key = ""
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        """Starts the server (on the port it had, after a stop) and waits until it listens."""
        if not BIN.exists():
            raise RuntimeError(f"{BIN} does not exist: build it with `cargo build -p switchboard` or set SWITCHBOARD_BIN")
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=self.env,
        )
        log.close()
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                self.kill()
                raise RuntimeError(f"the server did not start within 30 s; log:\n{self.log()}") from None
            if line is None:
                raise RuntimeError(f"the server exited early ({self.proc.wait()}); log:\n{self.log()}")
            found = re.search(r"Switchboard listening on http://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                break
        self.key = (self.data_dir / "default.key").read_text().strip()
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: a crash. Everything acknowledged must survive it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM: a graceful shutdown (sockets close with 1001)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def restart(self, graceful: bool = True) -> None:
        if graceful:
            self.stop()
        else:
            self.kill()
        self.start()


class Proxy:
    """A TCP proxy to the server. ``cut()`` drops every open connection; ``block()`` makes new
    ones fail until ``unblock()``, so a client stays away while a test acts."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.blocked = False
        self.accepted = 0
        self._links: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @staticmethod
    async def start(target_port: int) -> Proxy:
        proxy = Proxy(target_port)
        proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", 0)
        proxy.port = proxy._server.sockets[0].getsockname()[1]
        return proxy

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blocked:
            writer.transport.abort()
            return
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._links.discard(task)
            writer.transport.abort()
            if upstream_writer is not None:
                upstream_writer.transport.abort()

    def cut(self) -> None:
        for task in list(self._links):
            task.cancel()

    def block(self) -> None:
        self.blocked = True
        self.cut()

    def unblock(self) -> None:
        self.blocked = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.transport.abort()


async def next_event(channel: switchboard.Channel) -> switchboard.ChannelEvent:
    """The next event, failing the test after `WAIT`."""
    return await asyncio.wait_for(channel.next_event(), WAIT)


async def next_message(channel: switchboard.Channel) -> switchboard.Message:
    """The next message, skipping presence events and reconnect notices."""
    while True:
        event = await next_event(channel)
        if isinstance(event, switchboard.Message):
            return event
        assert isinstance(event, (switchboard.PresenceState, switchboard.PresenceDiff, switchboard.Reconnected)), event


async def until_reconnected(channel: switchboard.Channel) -> list[switchboard.Message]:
    """Waits for the reconnect notice; returns the messages that came before it."""
    before: list[switchboard.Message] = []
    while True:
        event = await next_event(channel)
        if isinstance(event, switchboard.Reconnected):
            return before
        if isinstance(event, switchboard.Message):
            before.append(event)
