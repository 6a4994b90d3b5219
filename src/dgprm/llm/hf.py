"""A local Hugging Face causal LM as a chat backend: ``hf:DIR``.

``DIR`` is a model directory (``config.json``) or a LoRA adapter directory written
by ``dgprm train --lora`` (``adapter_config.json``): the adapter's base is the model
that training used (``training_log.json``), else ``base_model_name_or_path``; it is
loaded (a directory, a ``.gguf`` file or ``embedded``, as ``dgprm train`` accepts),
the adapter applied with peft and merged for generation. ``hf:embedded`` and
``hf:FILE.gguf`` load a GGUF model de-quantised by transformers: the weights
``dgprm train`` starts from, so a trained adapter and its base can be compared in the
same backend (llama.cpp's ``embedded`` runs the quantised weights).

Generation runs with transformers on CUDA when available, else on the CPU, fully
offline. Requests that arrive while the model is busy are batched (up to
``max_batch``; the :class:`~dgprm.llm.LLMClient`'s concurrency bounds how many are in
flight). Every request keeps its own sampling: temperature 0 is greedy; otherwise the
next token is drawn from ``softmax(logits / temperature)`` with a random generator
seeded by the request's ``seed``, one generator per request, so a request's text
depends on its own seed and not on the other requests in its batch (up to the
floating-point effects of padding). Generation stops at the model's end-of-turn
token or after ``max_tokens`` tokens (``finish_reason="length"``).

The prompt is the tokenizer's chat template; a tokenizer without one gets
``"System: …\\n\\nUser: …\\n\\nAssistant:"``. A request's JSON ``schema`` is not
enforced (no constrained decoding): answers are parsed as the model writes them.

The model id (part of every cache key) is ``hf:<dir name>:<fingerprint>``, the
fingerprint hashing the directory's file names, sizes and the first and last MiB of
each file (and, for an adapter, its base), so retrained weights never meet stale
cached answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from dgprm.files import fingerprint
from dgprm.llm.base import ChatRequest, Completion, PermanentLLMError
from dgprm.llm.embedded import gguf_file


def adapter_base(adapter: Path) -> str:
    """The model spec an adapter directory was trained on: ``training_log.json``'s
    ``run.model`` (written by ``dgprm train``), else ``adapter_config.json``'s
    ``base_model_name_or_path``."""
    log = adapter / "training_log.json"
    if log.is_file():
        try:
            model = json.loads(log.read_text(encoding="utf-8"))["run"]["model"]
        except (ValueError, KeyError, TypeError):
            model = None
        if isinstance(model, str) and model:
            return model
    try:
        base = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise FileNotFoundError(f"{adapter}/adapter_config.json: invalid JSON ({exc})") from None
    name = base.get("base_model_name_or_path")
    if not isinstance(name, str) or not name:
        raise FileNotFoundError(f"{adapter}/adapter_config.json: no base_model_name_or_path")
    return name


def _base_fingerprint(spec: str) -> str:
    gguf = gguf_file(spec)
    if gguf is not None and gguf.is_file():
        return fingerprint(gguf)
    if not Path(spec).exists():
        raise FileNotFoundError(
            f"the adapter's base model {spec!r} is not a local directory or file"
        )
    return fingerprint(spec)


class _RowSampler:
    """A logits processor choosing each row's next token by that row's own rule:
    argmax at temperature 0, else a draw with the row's seeded generator; a row that
    reached its ``max_tokens`` gets the end token (and is marked truncated)."""

    def __init__(self, requests: list[ChatRequest], prompt_len: int, eos: int) -> None:
        self.requests = requests
        self.prompt_len = prompt_len
        self.eos = eos
        self.generators: list[Any] = []
        self.truncated = [False] * len(requests)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if not self.generators:
            self.generators = [
                torch.Generator(device=scores.device).manual_seed(int(r.seed))
                for r in self.requests
            ]
        made = input_ids.shape[1] - self.prompt_len
        chosen = torch.full_like(scores, float("-inf"))
        logits = scores.float()
        for i, request in enumerate(self.requests):
            if made >= request.max_tokens:
                token = self.eos
                self.truncated[i] = True
            elif request.temperature <= 0:
                token = int(torch.argmax(logits[i]))
            else:
                probs = torch.softmax(logits[i] / request.temperature, dim=-1)
                token = int(torch.multinomial(probs, 1, generator=self.generators[i]))
            chosen[i, token] = 0.0
        return chosen


class HFBackend:
    """A local transformers model (or dgprm LoRA adapter) behind :class:`ChatBackend`.

    Example:
        >>> backend = HFBackend("runs/dpo")                      # doctest: +SKIP
        >>> backend.model_id                                     # doctest: +SKIP
        'hf:dpo:3f2a9c0d1e4b'
    """

    def __init__(self, path: str | Path, *, device: str | None = None, max_batch: int = 16) -> None:
        self.path = Path(path)
        gguf = gguf_file(str(path))  # "embedded" or a .gguf file: de-quantised weights
        self.gguf = None if gguf is None else str(path)
        if gguf is not None and not gguf.is_file():
            raise FileNotFoundError(f"{gguf}: no such GGUF file")
        if gguf is None and not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: no such model directory")
        self.is_adapter = gguf is None and (self.path / "adapter_config.json").is_file()
        if gguf is None and not self.is_adapter and not (self.path / "config.json").is_file():
            raise FileNotFoundError(
                f"{self.path}: neither a model directory (config.json) nor a LoRA adapter "
                "(adapter_config.json)"
            )
        self.base = adapter_base(self.path) if self.is_adapter else None
        mark = fingerprint(gguf if gguf is not None else self.path)
        if self.base is not None:
            both = f"{mark}:{_base_fingerprint(self.base)}"
            mark = hashlib.sha256(both.encode()).hexdigest()[:12]
        self.model_id = f"hf:{self.path.name}:{mark}"
        self.requested_device = device
        self.max_batch = max_batch
        self.batches: list[int] = []  # size of every batch generated, in order
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: str | None = None
        self._lock = threading.Lock()
        self._pending: list[tuple[ChatRequest, asyncio.Future[Completion]]] = []
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---------------------------------------------------------------- loading ---

    @property
    def device(self) -> str:
        if self._device is None:
            import torch

            self._device = self.requested_device or ("cuda" if torch.cuda.is_available() else "cpu")
        return self._device

    def _dtype(self) -> Any:
        import torch

        if self.device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32

    def load(self) -> tuple[Any, Any]:
        """The model (on its device, in eval mode) and tokenizer, loaded once."""
        if self._model is not None:
            return self._model, self._tokenizer
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.gguf is not None:
            from dgprm.train import load_policy

            model, tokenizer = load_policy(self.gguf)
        elif self.is_adapter:
            from peft import PeftModel

            from dgprm.train import load_policy

            assert self.base is not None
            base, tokenizer = load_policy(self.base)
            if any(self.path.glob("tokenizer*")):
                tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            model = PeftModel.from_pretrained(base, str(self.path)).merge_and_unload()
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(str(self.path), local_files_only=True)
        model = model.to(device=self.device, dtype=self._dtype()).eval()
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._model, self._tokenizer = model, tokenizer
        return model, tokenizer

    def _eos_ids(self, model: Any, tokenizer: Any) -> list[int]:
        ids: list[int] = []
        configured = getattr(model.generation_config, "eos_token_id", None)
        for value in (tokenizer.eos_token_id, configured):
            for token in value if isinstance(value, list) else [value]:
                if isinstance(token, int) and token not in ids:
                    ids.append(token)
        if not ids:
            raise PermanentLLMError(f"{self.path}: the tokenizer has no end-of-sequence token")
        return ids

    def _prompt(self, tokenizer: Any, request: ChatRequest) -> str:
        messages = list(request.messages)
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        parts = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join([*parts, "Assistant:"])

    # ------------------------------------------------------------- generation ---

    def _limit(self, model: Any) -> int | None:
        return getattr(model.config, "max_position_embeddings", None)

    def _generate(self, requests: list[ChatRequest]) -> list[Completion]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        model, tokenizer = self.load()
        eos = self._eos_ids(model, tokenizer)
        texts = [self._prompt(tokenizer, r) for r in requests]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        input_ids = encoded["input_ids"].to(self.device)
        attention = encoded["attention_mask"].to(self.device)
        prompt_len = input_ids.shape[1]
        sampler = _RowSampler(requests, prompt_len, eos[0])
        config = GenerationConfig(
            max_new_tokens=max(r.max_tokens for r in requests),
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
        )
        with torch.no_grad():
            output = model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                generation_config=config,
                logits_processor=LogitsProcessorList([sampler]),
            )
        completions = []
        for i, request in enumerate(requests):
            tokens = output[i, prompt_len:].tolist()
            ended = next((k for k, t in enumerate(tokens) if t in eos), None)
            content = tokens if ended is None else tokens[:ended]
            truncated = ended is None or sampler.truncated[i] and len(content) >= request.max_tokens
            completions.append(
                Completion(
                    text=tokenizer.decode(content, skip_special_tokens=True),
                    prompt_tokens=int(attention[i].sum()),
                    completion_tokens=len(content),
                    finish_reason="length" if truncated else "stop",
                )
            )
        return completions

    def _run(self, requests: list[ChatRequest]) -> list[Completion | Exception]:
        """Generate for ``requests``; a failing batch is split in halves and retried (a
        batch too large for the device), a failing single request is its own error."""
        with self._lock:
            model, tokenizer = self.load()
            limit = self._limit(model)
        results: list[Completion | Exception | None] = [None] * len(requests)
        runnable = []
        for i, request in enumerate(requests):
            length = len(
                tokenizer(self._prompt(tokenizer, request), add_special_tokens=False)["input_ids"]
            )
            if limit is not None and length + request.max_tokens > limit:
                results[i] = PermanentLLMError(
                    f"prompt of {length} tokens + max_tokens {request.max_tokens} exceeds the "
                    f"model's {limit} positions"
                )
            else:
                runnable.append(i)

        def attempt(indices: list[int]) -> None:
            try:
                with self._lock:
                    done = self._generate([requests[i] for i in indices])
                self.batches.append(len(indices))
            except Exception as exc:  # noqa: BLE001 — reported per request below
                if len(indices) > 1:
                    half = len(indices) // 2
                    attempt(indices[:half])
                    attempt(indices[half:])
                    return
                results[indices[0]] = PermanentLLMError(f"hf generation failed: {exc}")
                return
            for i, completion in zip(indices, done, strict=True):
                results[i] = completion

        if runnable:
            attempt(runnable)
        return [r if r is not None else PermanentLLMError("not generated") for r in results]

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # requests issued in the same tick join the first batch
        while self._pending:
            batch = [(r, f) for r, f in self._pending[: self.max_batch] if not f.done()]
            del self._pending[: self.max_batch]
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(self._run, [r for r, _ in batch])
            except Exception as exc:  # noqa: BLE001 — loading failed: every request learns it
                results = [PermanentLLMError(f"hf backend: {exc}")] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def complete(self, request: ChatRequest) -> Completion:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop: what the old one queued is gone
            self._loop, self._pending, self._worker = loop, [], None
        future: asyncio.Future[Completion] = loop.create_future()
        self._pending.append((request, future))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await future

    async def aclose(self) -> None:
        self._model = self._tokenizer = None
        if self._device is not None and self._device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
