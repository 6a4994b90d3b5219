"""Persistent response cache (SQLite) and the per-run token ledger."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from dgprm.llm.base import Completion


@dataclass
class Ledger:
    """Counts for one run: calls made, cache hits, tokens, errors."""

    llm_calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0
    retries: int = 0
    llm_seconds: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def summary_rows(self, units: int, unit: str) -> list[tuple[str, str]]:
        """Closing-summary rows: calls, cache hits, tokens (each also per ``unit``), errors."""
        per = max(units, 1)
        requests = (self.llm_calls + self.cache_hits) / per
        tokens = (self.prompt_tokens + self.completion_tokens) / per
        return [
            ("LLM calls", f"{self.llm_calls} ({requests:.2f} requests/{unit})"),
            ("cache hits", str(self.cache_hits)),
            (
                "tokens",
                f"{self.prompt_tokens} prompt + {self.completion_tokens} completion "
                f"({tokens:.0f}/{unit})",
            ),
            ("errors", str(self.errors)),
        ]

    def copy(self) -> Ledger:
        return Ledger(**asdict(self))

    def since(self, before: Ledger) -> Ledger:
        """What was counted after ``before`` (a snapshot taken with :meth:`copy`)."""
        return Ledger(**{k: v - getattr(before, k) for k, v in asdict(self).items()})

    def add(self, other: Ledger) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)


class ResponseCache:
    """Completed answers keyed by the canonical request hash.

    Each answer is committed as soon as it arrives, so an interrupted run
    loses nothing it already paid for. The database is in WAL mode with
    ``synchronous=NORMAL``: a commit survives the process being killed, and is not
    flushed to disk one by one (an operating-system crash may lose the latest answers,
    which are then asked again). A flush per answer blocked the event loop for
    milliseconds per LLM call: half of the reward server's time in
    ``benchmarks/serve_throughput.py``.

    Example:
        >>> cache = ResponseCache(":memory:")
        >>> cache.put("k", Completion("hello", 3, 1))
        >>> cache.get("k").text
        'hello'
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, text TEXT NOT NULL,"
            " prompt_tokens INTEGER, completion_tokens INTEGER, finish_reason TEXT,"
            " logprobs TEXT)"
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(answers)")}
        if "logprobs" not in columns:  # a cache written before answers kept log-probs
            self._db.execute("ALTER TABLE answers ADD COLUMN logprobs TEXT")
        self._db.commit()

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, prompt_tokens, completion_tokens, finish_reason, logprobs"
                " FROM answers WHERE key = ?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        logprobs = json.loads(row[4]) if row[4] is not None else None
        return Completion(row[0], row[1], row[2], row[3], logprobs)

    def put(self, key: str, completion: Completion) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                (
                    key,
                    completion.text,
                    completion.prompt_tokens,
                    completion.completion_tokens,
                    completion.finish_reason,
                    None if completion.logprobs is None else json.dumps(completion.logprobs),
                ),
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
