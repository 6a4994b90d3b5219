"""One event loop on a daemon thread, so synchronous callers (a trainer's reward hook) share
one LLM client: its keep-alive connections, its cache and its concurrency bound."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """Runs coroutines on an event loop of its own thread, started on first use (and again in
    a forked child, where the parent's thread does not exist).

    Example:
        >>> loop = BackgroundLoop()
        >>> async def add(a, b):
        ...     await asyncio.sleep(0)
        ...     return a + b
        >>> loop.run(add(2, 3)), loop.run(add(1, 1))
        (5, 2)
        >>> loop.close()
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid() or not self._thread_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="dgprm-reward-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for its result (or exception)."""
        loop = self._running()
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("BackgroundLoop.run called from its own loop; await instead")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    def close(self) -> None:
        """Stop the loop and its thread."""
        with self._lock:
            if self._loop is not None and self._thread_alive():
                self._loop.call_soon_threadsafe(self._loop.stop)
                assert self._thread is not None
                self._thread.join(timeout=10)
                self._loop.close()
            self._loop, self._thread = None, None
