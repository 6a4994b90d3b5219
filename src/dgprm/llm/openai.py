"""Any OpenAI-compatible chat server (vLLM, SGLang, Ollama, llama.cpp server, OpenAI).

Talks plain HTTP through httpx, so tests inject ``httpx.MockTransport`` at
this boundary instead of patching internals.
"""

from __future__ import annotations

import os
import urllib.request

import httpx

from dgprm.llm.base import (
    ChatRequest,
    Completion,
    PermanentLLMError,
    TransientLLMError,
    completion_from_chat,
)
from dgprm.llm.transport import KeepAliveTransport

API_KEY_ENVS = ("DGPRM_API_KEY", "OPENAI_API_KEY")
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def api_key_from_env() -> str | None:
    """The first API key found in ``DGPRM_API_KEY`` or ``OPENAI_API_KEY``."""
    for name in API_KEY_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def auth_headers(api_key: str | None) -> dict[str, str]:
    """``Authorization`` header from ``api_key``, or from the environment when it is None."""
    key = api_key if api_key is not None else api_key_from_env()
    return {"Authorization": f"Bearer {key}"} if key else {}


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def raise_for_status(response: httpx.Response) -> None:
    """Map an HTTP error to a transient (retry) or permanent failure."""
    if response.status_code < 400:
        return
    detail = response.text[:200].replace("\n", " ")
    message = f"HTTP {response.status_code} from {response.request.url}: {detail}"
    if response.status_code in RETRYABLE_STATUS:
        raise TransientLLMError(message, retry_after_seconds(response))
    raise PermanentLLMError(message)


def default_transport(base_url: str) -> httpx.AsyncBaseTransport | None:
    """:class:`KeepAliveTransport`, or None (httpx's own) when an environment proxy applies.

    httpx honours ``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY`` only with its own transport.

    Example:
        >>> type(default_transport("http://127.0.0.1:8000/v1")).__name__  # doctest: +SKIP
        'KeepAliveTransport'
    """
    url = httpx.URL(base_url)
    proxies = urllib.request.getproxies_environment()
    proxied = proxies.get(url.scheme) or proxies.get("all")
    if proxied and not urllib.request.proxy_bypass_environment(url.host, proxies):
        return None
    return KeepAliveTransport()


class OpenAIBackend:
    """Chat completions from ``{base_url}/chat/completions`` with JSON-schema output.

    Example:
        >>> backend = OpenAIBackend("http://127.0.0.1:8000/v1", "qwen2.5-7b")
        >>> backend.model_id
        'openai:http://127.0.0.1:8000/v1#qwen2.5-7b'
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.model_id = f"openai:{self.base_url}#{model}"
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=auth_headers(api_key),
            timeout=timeout,
            transport=transport or default_transport(self.base_url),
        )

    async def complete(self, request: ChatRequest) -> Completion:
        body = {"model": self.model, **request.openai_body()}
        try:
            response = await self._http.post("/chat/completions", json=body)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise TransientLLMError(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:  # a bad URL, a proxy error, …: retrying will not help
            raise PermanentLLMError(f"{type(exc).__name__}: {exc}") from exc
        raise_for_status(response)
        try:
            answer = response.json()
        except ValueError as exc:
            raise PermanentLLMError(f"malformed chat response: {exc}") from exc
        return completion_from_chat(answer)

    async def aclose(self) -> None:
        await self._http.aclose()
