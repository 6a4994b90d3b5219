"""A lean HTTP/1.1 keep-alive transport for httpx, for many concurrent requests to one server.

httpcore's connection pool re-examines every connection (a ``poll`` system call each)
whenever a request is queued or finishes. At a few hundred requests per second over
32 or more connections that scan took most of the client's CPU time in
``benchmarks/scoring_throughput.py``. This transport keeps, per origin, a stack of idle
connections: a request takes the most recently used one or opens a new one, and gives
it back when the response is complete. The LLM client already bounds concurrency, so
there is no connection limit here.

Example:
    >>> import httpx
    >>> client = httpx.AsyncClient(transport=KeepAliveTransport())
"""

from __future__ import annotations

import asyncio
import ssl
from collections import defaultdict

import h11
import httpx

_READ_CHUNK = 1 << 16
Origin = tuple[str, str, int]


class _Connection:
    """One HTTP/1.1 connection: asyncio streams plus an h11 state machine."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.protocol = h11.Connection(h11.CLIENT)

    def usable(self) -> bool:
        """Still open from both sides (the server may close an idle connection)."""
        return not self.reader.at_eof() and not self.writer.is_closing()

    async def exchange(self, request: httpx.Request) -> tuple[h11.Response, bytes]:
        """Send ``request`` and read the whole response."""
        protocol = self.protocol
        body = await request.aread()
        wire = protocol.send(
            h11.Request(
                method=request.method, target=request.url.raw_path, headers=request.headers.raw
            )
        )
        if body:
            wire += protocol.send(h11.Data(data=body))
        wire += protocol.send(h11.EndOfMessage())
        self.writer.write(wire)
        await self.writer.drain()
        head: h11.Response | None = None
        chunks: list[bytes] = []
        while True:
            event = protocol.next_event()
            if event is h11.NEED_DATA:
                protocol.receive_data(await self.reader.read(_READ_CHUNK))
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None  # h11 emits the response head before its end
                return head, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise httpx.RemoteProtocolError("server closed the connection", request=request)

    def recycle(self) -> bool:
        """Ready the connection for the next request; False when it cannot be reused."""
        protocol = self.protocol
        if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
            protocol.start_next_cycle()
            return self.usable()
        return False

    def close(self) -> None:
        self.writer.close()


class _StaleConnection(Exception):
    """The connection failed before a whole response arrived; ``error`` is what to raise."""

    def __init__(self, error: httpx.TransportError) -> None:
        super().__init__(str(error))
        self.error = error


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with per-origin idle stacks; timeouts come from the httpx client.

    A request that fails on a reused connection before its response is complete is sent
    once more on a fresh connection (the server may have closed the idle connection as
    the request went out). Chat completions tolerate the rare duplicate this can cause.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[_Connection]] = defaultdict(list)

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    async def _connect(
        self, origin: Origin, request: httpx.Request, timeout: float | None
    ) -> _Connection:
        scheme, host, port = origin
        opening = asyncio.open_connection(
            host, port, ssl=self._tls() if scheme == "https" else None, limit=_READ_CHUNK * 4
        )
        try:
            reader, writer = await asyncio.wait_for(opening, timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port}", request=request) from exc
        except OSError as exc:
            raise httpx.ConnectError(f"{host}:{port}: {exc}", request=request) from exc
        return _Connection(reader, writer)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin: Origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts = request.extensions.get("timeout", {})
        connect_timeout, read_timeout = timeouts.get("connect"), timeouts.get("read")
        connection = self._take_idle(origin)
        if connection is not None:
            try:
                return await self._send(connection, request, origin, read_timeout)
            except _StaleConnection:
                pass  # the server had closed this kept-alive connection: once more, fresh
        connection = await self._connect(origin, request, connect_timeout)
        try:
            return await self._send(connection, request, origin, read_timeout)
        except _StaleConnection as exc:
            raise exc.error from exc.__cause__

    def _take_idle(self, origin: Origin) -> _Connection | None:
        """The most recently used idle connection to ``origin`` that is still open."""
        idle = self._idle[origin]
        while idle:
            connection = idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    async def _send(
        self, connection: _Connection, request: httpx.Request, origin: Origin, timeout: float | None
    ) -> httpx.Response:
        try:
            head, body = await asyncio.wait_for(connection.exchange(request), timeout)
        except TimeoutError as exc:
            connection.close()
            raise httpx.ReadTimeout("no complete response in time", request=request) from exc
        except (OSError, httpx.RemoteProtocolError, h11.RemoteProtocolError) as exc:
            connection.close()
            error_type = httpx.ReadError if isinstance(exc, OSError) else httpx.RemoteProtocolError
            error = error_type(str(exc) or type(exc).__name__, request=request)
            raise _StaleConnection(error) from exc
        except BaseException:  # cancelled mid-exchange: the connection state is unknown
            connection.close()
            raise
        if connection.recycle():
            self._idle[origin].append(connection)
        else:
            connection.close()
        return httpx.Response(
            head.status_code,
            headers=head.headers,
            stream=httpx.ByteStream(body),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
        )

    async def aclose(self) -> None:
        for stack in self._idle.values():
            for connection in stack:
                connection.close()
        self._idle.clear()
