"""The one LLM boundary every stage talks to.

:class:`LLMClient` wraps a backend with, once: the persistent cache, a
concurrency limit, retries with backoff (honouring ``Retry-After``), answer
parsing against a pydantic model, explicit failure records and the ledger.
Stages never know which backend answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import json
import random
import time
from collections.abc import Iterator
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from dgprm.llm.base import (
    ChatBackend,
    ChatRequest,
    Completion,
    LLMFailure,
    PermanentLLMError,
    TransientLLMError,
)
from dgprm.llm.cache import Ledger, ResponseCache

Answer = TypeVar("Answer", bound=BaseModel)
_SCOPES: contextvars.ContextVar[tuple[Ledger, ...]] = contextvars.ContextVar(
    "dgprm_scopes", default=()
)


def extract_json(text: str) -> Any:
    """Parse the first JSON object in ``text`` (tolerates code fences and chatter).

    Example:
        >>> extract_json('Sure! ```json\\n{"a": 1}\\n```')
        {'a': 1}
    """
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in the answer")
    obj, _ = json.JSONDecoder().raw_decode(text[start:])
    return obj


def validation_message(exc: ValidationError) -> str:
    """The first validation error as one line naming the field.

    Example:
        >>> from pydantic import BaseModel
        >>> class Ok(BaseModel):
        ...     ok: bool
        >>> try:
        ...     Ok.model_validate({"ok": "maybe"})
        ... except ValidationError as exc:
        ...     validation_message(exc)
        "field 'ok': Input should be a valid boolean, unable to interpret input"
    """
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(answer)"
    return f"field '{where}': {first['msg'].removeprefix('Value error, ')}"


@contextlib.contextmanager
def usage_scope() -> Iterator[Ledger]:
    """Count the calls of every :class:`LLMClient` made inside this block (and in tasks it
    starts) in a separate ledger. Scopes nest: an inner block's calls count in the outer
    ledgers too.

    Example:
        >>> with usage_scope() as outer:
        ...     with usage_scope() as inner:
        ...         for ledger in _SCOPES.get():
        ...             ledger.llm_calls += 1
        >>> outer.llm_calls, inner.llm_calls
        (1, 1)
    """
    ledger = Ledger()
    token = _SCOPES.set((*_SCOPES.get(), ledger))
    try:
        yield ledger
    finally:
        _SCOPES.reset(token)


class LLMClient:
    """Cached, concurrency-limited, retrying access to one chat backend.

    Example (with a test double backend):
        >>> import asyncio
        >>> class Echo:
        ...     model_id = "echo"
        ...     async def complete(self, request):
        ...         return Completion('{"ok": true}', 5, 2)
        ...     async def aclose(self): ...
        >>> from pydantic import BaseModel
        >>> class Ok(BaseModel):
        ...     ok: bool
        >>> client = LLMClient(Echo(), cache=ResponseCache(":memory:"))
        >>> req = ChatRequest(messages=({"role": "user", "content": "hi"},))
        >>> asyncio.run(client.ask(req, Ok, stage="demo")).ok
        True
        >>> client.ledger.llm_calls, client.ledger.prompt_tokens
        (1, 5)
    """

    def __init__(
        self,
        backend: ChatBackend,
        *,
        cache: ResponseCache | None = None,
        concurrency: int = 4,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        sampling: dict[str, float] | None = None,
    ) -> None:
        self.backend = backend
        self.sampling = tuple(sorted((sampling or {}).items()))
        self.cache = cache
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.ledger = Ledger()
        self.failures: list[LLMFailure] = []
        self._concurrency = concurrency
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    @property
    def concurrency(self) -> int:
        """How many calls this client lets run at once."""
        return self._concurrency

    def scoped(self) -> contextlib.AbstractContextManager[Ledger]:
        """Count the calls made inside this block (and tasks it starts) in a separate ledger
        (see :func:`usage_scope`)."""
        return usage_scope()

    def _ledgers(self) -> list[Ledger]:
        return [self.ledger, *_SCOPES.get()]

    def _limit(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._semaphore = asyncio.Semaphore(self._concurrency)
            self._loop = loop
        return self._semaphore

    async def complete(self, request: ChatRequest) -> Completion:
        """Return the completion for ``request`` from the cache or the backend.

        Raises the last error when every retry failed.
        """
        if self.sampling and not request.sampling:  # the client's sampling controls
            request = dataclasses.replace(request, sampling=self.sampling)
        key = request.cache_key(self.model_id)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                for ledger in self._ledgers():
                    ledger.cache_hits += 1
                return cached
        ledgers = self._ledgers()
        async with self._limit():
            attempt = 0
            while True:
                started = time.perf_counter()
                try:
                    completion = await self.backend.complete(request)
                except TransientLLMError as exc:
                    for ledger in ledgers:
                        ledger.llm_seconds += time.perf_counter() - started
                    if attempt >= self.max_retries:
                        raise
                    delay = exc.retry_after
                    if delay is None:
                        delay = min(self.max_backoff, self.backoff * 2**attempt)
                        delay *= 0.5 + random.random() / 2
                    attempt += 1
                    for ledger in ledgers:
                        ledger.retries += 1
                    await asyncio.sleep(delay)
                    continue
                for ledger in ledgers:
                    ledger.llm_seconds += time.perf_counter() - started
                break
        for ledger in ledgers:
            ledger.llm_calls += 1
            ledger.prompt_tokens += completion.prompt_tokens
            ledger.completion_tokens += completion.completion_tokens
        if self.cache is not None:
            self.cache.put(key, completion)
        return completion

    async def generate(
        self, request: ChatRequest, *, stage: str, **context: Any
    ) -> Completion | LLMFailure:
        """:meth:`complete`, but a failed call comes back as a counted :class:`LLMFailure`."""
        try:
            return await self.complete(request)
        except (TransientLLMError, PermanentLLMError) as exc:
            return self.fail(LLMFailure(stage, f"LLM call failed: {exc}", None, context))

    async def ask(
        self, request: ChatRequest, answer: type[Answer], *, stage: str, **context: Any
    ) -> Answer | LLMFailure:
        """Call the LLM and parse its JSON answer as ``answer``.

        Never raises for LLM trouble: a failed call or an unparseable answer
        comes back as an :class:`LLMFailure`, which is also counted and kept in
        :attr:`failures`.
        """
        result = await self.ask_with_completion(request, answer, stage=stage, **context)
        return result if isinstance(result, LLMFailure) else result[0]

    async def ask_with_completion(
        self, request: ChatRequest, answer: type[Answer], *, stage: str, **context: Any
    ) -> tuple[Answer, Completion] | LLMFailure:
        """:meth:`ask`, also returning the completion (its token log-probabilities)."""
        completion = await self.generate(request, stage=stage, **context)
        if isinstance(completion, LLMFailure):
            return completion
        try:
            return answer.model_validate(extract_json(completion.text)), completion
        except ValidationError as exc:
            reason = validation_message(exc)
        except ValueError as exc:
            reason = str(exc).splitlines()[0]
        if completion.finish_reason == "length":
            reason = f"answer cut at max_tokens ({reason})"
        return self.fail(
            LLMFailure(stage, f"unparseable answer: {reason}", completion.text, context)
        )

    def fail(self, failure: LLMFailure) -> LLMFailure:
        """Record a failure found by a caller (e.g. an answer naming unknown criteria)."""
        for ledger in self._ledgers():
            ledger.errors += 1
        self.failures.append(failure)
        return failure

    async def aclose(self) -> None:
        await self.backend.aclose()
        if self.cache is not None:
            self.cache.close()
