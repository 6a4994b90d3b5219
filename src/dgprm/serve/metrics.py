"""The reward server's counters, in Prometheus' text exposition format (version 0.0.4).

Written by hand: a few counters, one gauge and one latency histogram need no library.
LLM usage (calls, cache hits, tokens, errors, retries) is read from the shared client's
:class:`~dgprm.llm.cache.Ledger` at scrape time, so it also counts calls made outside HTTP
requests.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from dataclasses import dataclass, field

from dgprm.llm.cache import Ledger

#: Upper bounds (seconds) of the request latency histogram's buckets.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    escaped = (
        (k, v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')) for k, v in labels
    )
    return "{" + ",".join(f'{k}="{v}"' for k, v in escaped) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Histogram:
    """Cumulative-bucket histogram of one labelled series."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1


class ServeMetrics:
    """What ``GET /metrics`` reports.

    Example:
        >>> m = ServeMetrics()
        >>> m.request("/get_reward", 200, 0.12)
        >>> m.items("/get_reward", "ok", 1, steps=3, step_errors=0)
        >>> text = m.render(Ledger(llm_calls=9, cache_hits=1))
        >>> 'dgprm_requests_total{endpoint="/get_reward",status="200"} 1' in text
        True
        >>> 'dgprm_request_seconds_bucket{endpoint="/get_reward",le="0.15"} 1' in text
        True
        >>> "dgprm_llm_calls_total 9" in text, "dgprm_cache_hits_total 1" in text
        (True, True)
    """

    def __init__(self, *, concurrency: int | None = None) -> None:
        self.requests: defaultdict[Labels, int] = defaultdict(int)
        self.latency: defaultdict[str, Histogram] = defaultdict(Histogram)
        self.scored: defaultdict[Labels, int] = defaultdict(int)
        self.steps: defaultdict[str, int] = defaultdict(int)
        self.step_errors: defaultdict[str, int] = defaultdict(int)
        self.fallbacks: defaultdict[str, int] = defaultdict(int)
        self.in_flight = 0
        self.concurrency = concurrency

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one finished request and its latency."""
        self.requests[(("endpoint", endpoint), ("status", str(status)))] += 1
        self.latency[endpoint].observe(seconds)

    def items(
        self, endpoint: str, outcome: str, count: int = 1, *, steps: int = 0, step_errors: int = 0
    ) -> None:
        """Count scored items by outcome (``ok``, ``failed``, ``fallback``) and their steps."""
        self.scored[(("endpoint", endpoint), ("outcome", outcome))] += count
        self.steps[endpoint] += steps
        self.step_errors[endpoint] += step_errors
        if outcome == "fallback":
            self.fallbacks[endpoint] += count

    def render(self, ledger: Ledger) -> str:
        """The Prometheus text exposition of every series."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("dgprm_requests_total", "counter", "HTTP requests answered, by endpoint and status.")
        for labels, n in sorted(self.requests.items()):
            out.append(f"dgprm_requests_total{_labels(labels)} {n}")
        family("dgprm_request_seconds", "histogram", "Request latency in seconds, by endpoint.")
        for endpoint, hist in sorted(self.latency.items()):
            seen = 0
            for bound, n in zip((*hist.bounds, math.inf), hist.counts, strict=True):
                seen += n
                labels = (("endpoint", endpoint), ("le", _number(bound)))
                out.append(f"dgprm_request_seconds_bucket{_labels(labels)} {seen}")
            base = _labels((("endpoint", endpoint),))
            out.append(f"dgprm_request_seconds_sum{base} {_number(hist.total)}")
            out.append(f"dgprm_request_seconds_count{base} {hist.count}")
        family("dgprm_requests_in_flight", "gauge", "Requests being answered now.")
        out.append(f"dgprm_requests_in_flight {self.in_flight}")
        family(
            "dgprm_items_total",
            "counter",
            "Solutions scored, by endpoint and outcome (ok, failed, fallback).",
        )
        for labels, n in sorted(self.scored.items()):
            out.append(f"dgprm_items_total{_labels(labels)} {n}")
        family("dgprm_steps_total", "counter", "Steps scored, by endpoint.")
        for endpoint, n in sorted(self.steps.items()):
            out.append(f"dgprm_steps_total{_labels((('endpoint', endpoint),))} {n}")
        family("dgprm_step_errors_total", "counter", "Steps whose scoring failed, by endpoint.")
        for endpoint, n in sorted(self.step_errors.items()):
            out.append(f"dgprm_step_errors_total{_labels((('endpoint', endpoint),))} {n}")
        family(
            "dgprm_fallback_rewards_total",
            "counter",
            "Failed solutions given the --on-error fallback reward, by endpoint.",
        )
        for endpoint, n in sorted(self.fallbacks.items()):
            out.append(f"dgprm_fallback_rewards_total{_labels((('endpoint', endpoint),))} {n}")
        for name, value, help_text in (
            ("dgprm_llm_calls_total", ledger.llm_calls, "LLM calls made (cache misses)."),
            ("dgprm_cache_hits_total", ledger.cache_hits, "LLM answers served from the cache."),
            ("dgprm_llm_errors_total", ledger.errors, "Failed LLM calls and unparseable answers."),
            ("dgprm_llm_retries_total", ledger.retries, "Retried LLM calls."),
            ("dgprm_prompt_tokens_total", ledger.prompt_tokens, "Prompt tokens of LLM calls."),
            (
                "dgprm_completion_tokens_total",
                ledger.completion_tokens,
                "Completion tokens of LLM calls.",
            ),
            ("dgprm_llm_seconds_total", ledger.llm_seconds, "Seconds spent in LLM calls (summed)."),
        ):
            family(name, "counter", help_text)
            out.append(f"{name} {_number(value)}")
        if self.concurrency is not None:
            family("dgprm_llm_concurrency_limit", "gauge", "LLM calls allowed in flight at once.")
            out.append(f"dgprm_llm_concurrency_limit {self.concurrency}")
        return "\n".join(out) + "\n"
