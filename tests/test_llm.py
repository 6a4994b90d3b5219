import asyncio
import dataclasses
import json

import httpx
import pytest
from pydantic import BaseModel

from dgprm.llm import ChatRequest, Completion, LLMClient, LLMFailure, ResponseCache, make_backend
from dgprm.llm.openai import OpenAIBackend

BASE = ChatRequest(
    messages=({"role": "user", "content": "hi"},), schema={"type": "object"}, template="t@1"
)


class Ok(BaseModel):
    ok: bool


def test_same_request_same_key_any_change_new_key():
    key = BASE.cache_key("m")
    assert key == dataclasses.replace(BASE).cache_key("m")
    changed = [
        dataclasses.replace(BASE, messages=({"role": "user", "content": "hi!"},)),
        dataclasses.replace(BASE, schema={"type": "array"}),
        dataclasses.replace(BASE, temperature=0.5),
        dataclasses.replace(BASE, max_tokens=7),
        dataclasses.replace(BASE, seed=1),
        dataclasses.replace(BASE, template="t@2"),
    ]
    keys = {r.cache_key("m") for r in changed} | {BASE.cache_key("other-model")}
    assert key not in keys and len(keys) == len(changed) + 1


def test_cache_hit_avoids_the_backend_and_is_counted(scripted_client, tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    client, backend = scripted_client(lambda r: '{"ok": true}', cache=cache)
    assert asyncio.run(client.ask(BASE, Ok, stage="s")).ok
    again, backend2 = scripted_client(lambda r: '{"ok": false}', cache=ResponseCache(cache.path))
    assert asyncio.run(again.ask(BASE, Ok, stage="s")).ok  # served from the persistent cache
    assert backend2.requests == []
    assert (again.ledger.llm_calls, again.ledger.cache_hits) == (0, 1)
    other = dataclasses.replace(BASE, seed=3)
    assert asyncio.run(again.ask(other, Ok, stage="s")).ok is False
    assert again.ledger.llm_calls == 1


def test_unparseable_answer_is_an_error_record_never_a_default(scripted_client):
    client, _ = scripted_client(lambda r: "I think yes")
    result = asyncio.run(client.ask(BASE, Ok, stage="judge", pair_id="p"))
    assert isinstance(result, LLMFailure)
    assert result.stage == "judge" and result.raw == "I think yes"
    assert result.context == {"pair_id": "p"}
    assert client.ledger.errors == 1 and client.failures == [result]


def test_schema_violation_and_truncation_are_reported(scripted_client):
    client, _ = scripted_client(lambda r: Completion('{"ok": "maybe"', 1, 1, "length"))
    result = asyncio.run(client.ask(BASE, Ok, stage="s"))
    assert isinstance(result, LLMFailure) and "cut at max_tokens" in result.reason


def _openai_reply(content: str) -> dict:
    return {
        "choices": [{"message": {"content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3},
    }


def test_openai_backend_retries_transient_errors_honouring_retry_after():
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        if len(seen) == 1:
            return httpx.Response(429, headers={"Retry-After": "0"}, text="slow down")
        if len(seen) == 2:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, json=_openai_reply('{"ok": true}'))

    backend = OpenAIBackend(
        "http://test/v1", "m", api_key="k", transport=httpx.MockTransport(handler)
    )
    client = LLMClient(backend, backoff=0.0)
    assert asyncio.run(client.ask(BASE, Ok, stage="s")).ok
    assert len(seen) == 3 and client.ledger.retries == 2
    assert seen[0]["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert seen[0]["temperature"] == 0.0 and seen[0]["seed"] == 0
    assert (client.ledger.llm_calls, client.ledger.prompt_tokens) == (1, 12)


def test_openai_backend_permanent_error_becomes_error_record():
    backend = OpenAIBackend(
        "http://test/v1",
        "m",
        api_key="k",
        transport=httpx.MockTransport(lambda r: httpx.Response(401, text="bad key")),
    )
    client = LLMClient(backend, backoff=0.0)
    result = asyncio.run(client.ask(BASE, Ok, stage="s"))
    assert isinstance(result, LLMFailure) and "HTTP 401" in result.reason
    assert client.ledger.retries == 0 and client.ledger.errors == 1


def test_retries_give_up_after_max_retries():
    calls = []
    backend = OpenAIBackend(
        "http://test/v1",
        "m",
        api_key="k",
        transport=httpx.MockTransport(
            lambda r: calls.append(1) or httpx.Response(500, text="down")
        ),
    )
    client = LLMClient(backend, backoff=0.0, max_retries=2)
    assert isinstance(asyncio.run(client.ask(BASE, Ok, stage="s")), LLMFailure)
    assert len(calls) == 3


def test_concurrency_is_bounded(scripted_client):
    active = {"now": 0, "max": 0}

    class Slow:
        model_id = "slow"

        async def complete(self, request):
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
            await asyncio.sleep(0.01)
            active["now"] -= 1
            return Completion('{"ok": true}')

        async def aclose(self):
            pass

    client = LLMClient(Slow(), concurrency=3)

    async def many():
        reqs = [dataclasses.replace(BASE, seed=i) for i in range(12)]
        return await asyncio.gather(*(client.ask(r, Ok, stage="s") for r in reqs))

    assert all(r.ok for r in asyncio.run(many()))
    assert active["max"] == 3


@pytest.mark.parametrize("spec", ["nope", "openai:http://x", "openai:#m"])
def test_bad_backend_specs_are_refused(spec):
    with pytest.raises(ValueError, match="spec"):
        make_backend(spec)


def test_missing_gguf_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="GGUF model file not found"):
        make_backend(f"gguf:{tmp_path / 'missing.gguf'}")


def test_sampling_controls_reach_the_backend_and_the_cache_key():
    from dgprm.config import RuntimeConfig

    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=_openai_reply('{"ok": true}'))

    runtime = RuntimeConfig(repeat_penalty=1.1, dry_multiplier=0.8)
    backend = OpenAIBackend("http://test/v1", "m", transport=httpx.MockTransport(handler))
    cache = ResponseCache(":memory:")
    client = LLMClient(backend, cache=cache, sampling=runtime.sampling)
    assert asyncio.run(client.ask(BASE, Ok, stage="s")).ok
    assert seen[0]["repeat_penalty"] == 1.1 and seen[0]["dry_multiplier"] == 0.8
    plain = LLMClient(backend, cache=cache)
    asyncio.run(plain.ask(BASE, Ok, stage="s"))
    assert len(seen) == 2 and "repeat_penalty" not in seen[1]  # another cache key
    assert RuntimeConfig().sampling == {}
