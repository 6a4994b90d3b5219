"""The asynchronous embedder shared by concurrent steps (scoring, the server)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from dgprm.embed import AsyncEmbedder, normalise_rows


class Recording:
    """An embedder that notes each batch it encodes and the thread that encoded it."""

    model_id = "recording"

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()
        self.fail = fail

    def encode(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("model fell over")
        return normalise_rows([[len(t), t.count("a") + 1.0] for t in texts])


def test_concurrent_callers_share_one_batch_and_repeats_are_encoded_once() -> None:
    inner = Recording()
    embedder = AsyncEmbedder(inner)

    async def run() -> list[np.ndarray]:
        return await asyncio.gather(*(embedder.encode([t, "shared"]) for t in "abc"))

    rows = asyncio.run(run())
    assert [r.shape for r in rows] == [(2, 2)] * 3
    assert inner.batches == [["a", "shared", "b", "c"]]
    np.testing.assert_allclose(rows[0][1], rows[2][1])
    asyncio.run(embedder.encode(["shared", "a"]))
    assert len(inner.batches) == 1, "cached texts are not encoded again"


def test_every_batch_is_encoded_on_the_same_dedicated_thread() -> None:
    inner = Recording()
    embedder = AsyncEmbedder(inner, cache_size=0)

    async def run() -> None:
        for round_ in range(5):
            await asyncio.gather(*(embedder.encode([f"{round_}-{i}"]) for i in range(4)))

    asyncio.run(run())
    assert len(inner.batches) == 5
    assert len(inner.threads) == 1
    assert next(iter(inner.threads)).startswith("dgprm-embed")


def test_an_encoder_error_reaches_every_waiter_of_the_batch() -> None:
    embedder = AsyncEmbedder(Recording(fail=True))

    async def run() -> list[object]:
        return await asyncio.gather(*(embedder.encode([t]) for t in "ab"), return_exceptions=True)

    results = asyncio.run(run())
    assert [str(r) for r in results] == ["model fell over"] * 2


def test_the_cache_keeps_only_the_most_recent_texts() -> None:
    inner = Recording()
    embedder = AsyncEmbedder(inner, cache_size=2)
    for text in ["a", "b", "c", "a"]:
        asyncio.run(embedder.encode([text]))
    assert inner.batches == [["a"], ["b"], ["c"], ["a"]]


@pytest.mark.parametrize("texts", [[], ["x", "x"]])
def test_empty_and_repeated_inputs_keep_their_shape(texts: list[str]) -> None:
    embedder = AsyncEmbedder(Recording())
    rows = asyncio.run(embedder.encode(texts))
    assert rows.shape[0] == len(texts)
