"""The ``hf:DIR`` backend on the tiny random model (conftest) and on a LoRA adapter
trained for one step with ``dgprm.train.train_dpo``."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("transformers")

from dgprm.llm import (  # noqa: E402
    ChatBackend,
    ChatRequest,
    LLMClient,
    PermanentLLMError,
    ResponseCache,
    make_backend,
)
from dgprm.llm.hf import HFBackend  # noqa: E402


def request(seed: int = 0, temperature: float = 1.0, max_tokens: int = 8, text: str = "hi"):
    return ChatRequest(
        messages=({"role": "user", "content": text},),
        temperature=temperature,
        seed=seed,
        max_tokens=max_tokens,
    )


@pytest.fixture(scope="module")
def backend(tiny_model):
    return make_backend(f"hf:{tiny_model}")


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    pytest.importorskip("trl")
    from dgprm.config import TrainConfig
    from dgprm.train import train_dpo

    pairs = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    rows = [
        {"prompt": f"What is {a}+{a}?\nStep 1:", "chosen": f" {2 * a}", "rejected": f" {2 * a + 1}"}
        for a in range(4)
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path_factory.mktemp("lora") / "adapter"
    options = TrainConfig(lora=True, lora_rank=4, max_steps=1, learning_rate=5e-2, batch_size=2)
    summary = train_dpo(pairs, str(tiny_model), out, options)
    assert summary["steps"] == 1 and (out / "adapter_config.json").is_file()
    return out


def gather(backend, *requests):
    async def go():
        return await asyncio.gather(*(backend.complete(r) for r in requests))

    return asyncio.run(go())


def test_it_is_a_chat_backend_with_a_content_model_id(backend, tiny_model):
    assert isinstance(backend, HFBackend) and isinstance(backend, ChatBackend)
    assert backend.model_id.startswith(f"hf:{tiny_model.name}:")
    assert HFBackend(tiny_model).model_id == backend.model_id
    assert backend.device in ("cpu", "cuda")


def test_sampling_follows_the_request_seed_and_greedy_is_deterministic(backend):
    (a, b, c, g1, g2) = gather(
        backend, request(1), request(1), request(2), request(5, 0.0), request(6, 0.0)
    )
    assert a.text == b.text and a.text != c.text
    assert g1.text == g2.text  # temperature 0: the seed does not matter
    assert (a.completion_tokens, a.finish_reason) == (8, "length")  # random weights: no EOS
    assert a.prompt_tokens > 0


def test_concurrent_requests_are_batched_and_match_one_at_a_time(backend):
    alone = [asyncio.run(backend.complete(request(s, text="x" * (1 + 5 * s)))) for s in range(4)]
    backend.batches.clear()
    together = gather(backend, *(request(s, text="x" * (1 + 5 * s)) for s in range(4)))
    assert backend.batches == [4]
    assert [c.text for c in together] == [c.text for c in alone]


def test_per_request_max_tokens_in_one_batch(backend):
    short, long = gather(backend, request(1, max_tokens=3), request(1, max_tokens=9))
    assert (short.completion_tokens, long.completion_tokens) == (3, 9)
    assert long.text.startswith(short.text)  # same seed, same first tokens


def test_a_too_long_prompt_fails_alone(backend):
    ok, too_long = asyncio.run(
        _both(backend, request(1), request(1, text="word " * 400, max_tokens=8))
    )
    assert ok.completion_tokens == 8
    assert isinstance(too_long, PermanentLLMError) and "positions" in str(too_long)


async def _both(backend, *requests):
    return await asyncio.gather(*(backend.complete(r) for r in requests), return_exceptions=True)


def test_it_works_behind_the_llm_client_with_its_cache(backend, tmp_path):
    client = LLMClient(backend, cache=ResponseCache(tmp_path / "c.sqlite"), backoff=0.0)
    first = asyncio.run(client.complete(request(3)))
    again = asyncio.run(client.complete(request(3)))
    assert first == again and (client.ledger.llm_calls, client.ledger.cache_hits) == (1, 1)


def test_bad_directories_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        make_backend(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(FileNotFoundError, match="neither a model directory"):
        HFBackend(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x/y"}))
    with pytest.raises(FileNotFoundError, match="base model 'x/y'"):
        HFBackend(tmp_path)


def test_a_lora_adapter_loads_on_its_base_and_changes_the_model(adapter, backend, tiny_model):
    import torch

    lora = HFBackend(adapter)
    assert lora.is_adapter and lora.base == str(tiny_model)
    assert lora.model_id.startswith("hf:adapter:") and lora.model_id != backend.model_id
    tuned, tokenizer = lora.load()
    base, _ = backend.load()
    assert not any("lora_" in name for name, _ in tuned.named_parameters())  # merged
    ids = tokenizer("What is 2+2?\nStep 1:", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert not torch.allclose(tuned(ids).logits, base(ids).logits)
    (a, b) = gather(lora, request(4), request(4))
    assert a.text == b.text and a.completion_tokens == 8


def test_a_gguf_model_runs_de_quantised_from_a_directory_converted_once(tmp_path, monkeypatch):
    """``hf:embedded`` is the base ``dgprm train`` starts from: the packaged GGUF,
    de-quantised once into a cached model directory that later loads reuse."""
    from dgprm.llm.embedded import packaged_gguf
    from dgprm.train import gguf_model_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no such GGUF file"):
        make_backend(f"hf:{tmp_path / 'x.gguf'}")
    hf = make_backend("hf:embedded")
    assert hf.model_id.startswith("hf:embedded:")
    prompt = "What is the capital of France?"
    assert "Paris" in asyncio.run(hf.complete(request(0, 0.0, 12, prompt))).text
    converted = gguf_model_dir(packaged_gguf())
    assert converted.parent == tmp_path / "dgprm" / "gguf"
    stamp = (converted / "config.json").stat().st_mtime_ns
    assert gguf_model_dir(packaged_gguf()) == converted
    assert (converted / "config.json").stat().st_mtime_ns == stamp
    assert not list(converted.parent.glob("*.partial-*"))
