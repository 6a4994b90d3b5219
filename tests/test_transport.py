"""KeepAliveTransport against a real HTTP/1.1 server on 127.0.0.1 (asyncio streams)."""

import asyncio
import gzip
import json
import shutil
import ssl
import subprocess

import httpx
import pytest

from dgprm.llm.base import ChatRequest, TransientLLMError
from dgprm.llm.openai import OpenAIBackend, default_transport
from dgprm.llm.transport import KeepAliveTransport


class Server:
    """Answers each POST with its body echoed back; behaviour switches per test."""

    def __init__(
        self, *, close_after=0, delay=0.0, chunked=False, gzipped=False, answer=None, tls=None
    ):
        self.tls = tls  # an ssl.SSLContext for https
        self.answer = answer or (lambda body: body)  # request body → response body
        self.close_after = close_after  # close the connection after this many responses
        self.hang_up_on_second = False  # close instead of answering a connection's 2nd request
        self.delay, self.chunked, self.gzipped = delay, chunked, gzipped
        self.connections = 0
        self.url = ""

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=self.tls)
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def handle(self, reader, writer):
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                body = await reader.readexactly(length)
                if self.hang_up_on_second and served == 1:
                    break
                await asyncio.sleep(self.delay)
                writer.write(self.reply(self.answer(body)))
                await writer.drain()
                served += 1
                if served == self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    def reply(self, body: bytes) -> bytes:
        headers = [b"HTTP/1.1 200 OK", b"Content-Type: application/json"]
        if self.gzipped:
            body = gzip.compress(body)
            headers.append(b"Content-Encoding: gzip")
        if self.chunked:
            half = len(body) // 2
            payload = b"".join(
                b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:])
            )
            headers.append(b"Transfer-Encoding: chunked")
            return b"\r\n".join(headers) + b"\r\n\r\n" + payload + b"0\r\n\r\n"
        headers.append(b"Content-Length: %d" % len(body))
        return b"\r\n".join(headers) + b"\r\n\r\n" + body


async def post_all(server: Server, payloads: list[dict], **client_args) -> list[dict]:
    async with httpx.AsyncClient(transport=KeepAliveTransport(), **client_args) as client:
        responses = await asyncio.gather(
            *(client.post(server.url + "/v1/echo", json=p) for p in payloads)
        )
    return [r.json() for r in responses]


def test_sequential_requests_reuse_one_connection():
    async def run():
        async with Server() as server, httpx.AsyncClient(transport=KeepAliveTransport()) as client:
            for i in range(5):
                assert (await client.post(server.url + "/x", json={"i": i})).json() == {"i": i}
            return server.connections

    assert asyncio.run(run()) == 1


def test_concurrent_requests_get_their_own_answers():
    async def run():
        async with Server(delay=0.02) as server:
            answers = await post_all(server, [{"i": i} for i in range(20)])
            return answers, server.connections

    answers, connections = asyncio.run(run())
    assert answers == [{"i": i} for i in range(20)]
    assert connections == 20  # one per request in flight


def test_a_connection_closed_by_the_server_is_replaced():
    async def run():
        async with Server(close_after=1) as server:
            async with httpx.AsyncClient(transport=KeepAliveTransport()) as client:
                first = (await client.post(server.url + "/x", json={"n": 1})).json()
                await asyncio.sleep(0.05)  # the server has closed the kept-alive socket
                second = (await client.post(server.url + "/x", json={"n": 2})).json()
            return first, second, server.connections

    assert asyncio.run(run()) == ({"n": 1}, {"n": 2}, 2)


def test_a_request_the_server_hangs_up_on_is_sent_again_on_a_fresh_connection():
    async def run():
        async with Server() as server:
            server.hang_up_on_second = True  # a keep-alive timeout racing the next request
            async with httpx.AsyncClient(transport=KeepAliveTransport()) as client:
                first = (await client.post(server.url + "/x", json={"n": 1})).json()
                second = (await client.post(server.url + "/x", json={"n": 2})).json()
            return first, second, server.connections

    assert asyncio.run(run()) == ({"n": 1}, {"n": 2}, 2)


def test_chunked_and_gzipped_bodies_are_decoded():
    async def run():
        async with Server(chunked=True, gzipped=True) as server:
            return await post_all(server, [{"text": "x" * 5000}])

    assert asyncio.run(run()) == [{"text": "x" * 5000}]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_with_a_trusted_self_signed_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))

    async def run(client_context):
        async with Server(tls=server_tls) as server:
            transport = KeepAliveTransport(ssl_context=client_context)
            async with httpx.AsyncClient(transport=transport) as client:
                return [(await client.post(server.url, json={"i": i})).json() for i in range(2)]

    assert asyncio.run(run(client_tls)) == [{"i": 0}, {"i": 1}]
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(run(None))  # the default context does not trust the certificate


def test_timeouts_and_refused_connections_are_transient_llm_errors():
    request = ChatRequest(messages=({"role": "user", "content": "hi"},))

    async def slow():
        async with Server(delay=1.0) as server:
            backend = OpenAIBackend(server.url + "/v1", "m", api_key="k", timeout=0.1)
            try:
                await backend.complete(request)
            finally:
                await backend.aclose()

    with pytest.raises(TransientLLMError, match="ReadTimeout"):
        asyncio.run(slow())

    async def refused():
        async with Server() as server:
            url = server.url
        backend = OpenAIBackend(url + "/v1", "m", api_key="k")
        await backend.complete(request)

    with pytest.raises(TransientLLMError, match="ConnectError"):
        asyncio.run(refused())


def test_openai_backend_speaks_through_the_transport():
    def chat(body: bytes) -> bytes:
        sent = json.loads(body)
        content = json.dumps({"model": sent["model"], "said": sent["messages"][0]["content"]})
        completion = {
            "choices": [{"message": {"content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        }
        return json.dumps(completion).encode()

    async def run():
        async with Server(answer=chat) as server:
            backend = OpenAIBackend(server.url + "/v1", "m", api_key="k")
            try:
                return await asyncio.gather(
                    *(
                        backend.complete(ChatRequest(messages=({"role": "user", "content": t},)))
                        for t in ("a", "b", "c")
                    )
                )
            finally:
                await backend.aclose()

    completions = asyncio.run(run())
    assert [json.loads(c.text) for c in completions] == [
        {"model": "m", "said": t} for t in ("a", "b", "c")
    ]
    assert completions[0].prompt_tokens == 3 and completions[0].completion_tokens == 2


def test_an_environment_proxy_keeps_httpx_own_transport(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert isinstance(default_transport("http://10.0.0.5:8000/v1"), KeepAliveTransport)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    assert default_transport("http://10.0.0.5:8000/v1") is None  # httpx routes via the proxy
    assert isinstance(default_transport("https://api.example.com/v1"), KeepAliveTransport)
    monkeypatch.setenv("NO_PROXY", "10.0.0.5")
    assert isinstance(default_transport("http://10.0.0.5:8000/v1"), KeepAliveTransport)
