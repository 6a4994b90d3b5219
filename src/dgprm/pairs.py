"""Pareto preference pairs for step-wise DPO (METHOD.md §3).

For each prefix (a question and the steps so far): take ``n`` candidate next
steps (sampled from a policy LLM, or read from a file), score every candidate
on one common criterion set — the union of the criteria dynamic selection
picks for any of them — and pair each Pareto-optimal candidate with every
candidate it dominates. Lines are written in TRL's DPO format.

Example (see tests/test_pairs.py for a runnable version with test doubles):
    >>> scored = await score_prefix(scorer, prefix, ["x = 2", "x = 3"])  # doctest: +SKIP
    >>> dpo_rows(scored)[0]["prompt"]                                    # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dgprm.llm import Ledger, LLMClient, LLMFailure
from dgprm.pareto import preference_pairs
from dgprm.progress import NoProgress, Progress, counted
from dgprm.prompts import load_template
from dgprm.records import (
    Prefix,
    ResumableJsonl,
    earlier_run_note,
    has_errors,
    iter_json_lines,
    write_jsonl,
)
from dgprm.runner import for_each_bounded
from dgprm.scoring import StepScorer, render_context

CANDIDATE_CHARS = 800


@dataclass
class ScoredPrefix:
    """Candidates of one prefix, their vectors on the common criteria, and failures."""

    id: str
    question: str
    steps: list[str]
    candidates: list[str]
    criteria: list[str] = field(default_factory=list)
    vectors: list[list[float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pairs: list[tuple[int, int, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prompt_text(question: str, steps: list[str]) -> str:
    """The DPO prompt: the question and the shared prefix steps, one per line.

    Example:
        >>> prompt_text("What is 2+3?", ["2+3 = 5"])
        'What is 2+3?\\nStep 1: 2+3 = 5\\nStep 2:'
    """
    lines = [question.strip(), *(f"Step {i + 1}: {s.strip()}" for i, s in enumerate(steps))]
    return "\n".join([*lines, f"Step {len(steps) + 1}:"])


def clean_candidate(text: str) -> str:
    """One step from a policy's answer: the first paragraph, without a "Step N:" label.

    Example:
        >>> clean_candidate("Step 3: x = 4.\\n\\nStep 4: so y = 2.")
        'x = 4.'
    """
    first = text.strip().split("\n\n", 1)[0].strip()
    if first.lower().startswith("step "):
        head, sep, rest = first.partition(":")
        if sep and head[5:].strip().isdigit():
            first = rest.strip()
    return first[:CANDIDATE_CHARS]


async def sample_candidates(
    policy: LLMClient, prefix: Prefix, n: int, *, temperature: float, seed: int
) -> tuple[list[str], list[str]]:
    """``n`` sampled next steps (distinct seeds; duplicates and blanks dropped) and errors."""
    template = load_template("next_step")
    steps = "\n".join(f"Step {i + 1}: {s.strip()}" for i, s in enumerate(prefix.steps))

    async def one(j: int) -> str | LLMFailure:
        request = template.render(
            max_tokens=160,
            temperature=temperature,
            seed=seed + j,
            question=prefix.question,
            steps=steps or "(none yet)",
            number=str(len(prefix.steps) + 1),
        )
        completion = await policy.generate(request, stage="policy")
        if isinstance(completion, LLMFailure):  # an error record, never a candidate
            return completion
        return clean_candidate(completion.text)

    answers = await asyncio.gather(*(one(j) for j in range(n)))
    errors = [f"policy: {a.reason}" for a in answers if isinstance(a, LLMFailure)]
    unique = list(dict.fromkeys(a for a in answers if isinstance(a, str) and a))
    return unique, errors


async def score_prefix(scorer: StepScorer, prefix: Prefix, candidates: list[str]) -> ScoredPrefix:
    """Score every candidate on the union of the criteria selected for any of them."""
    scored = ScoredPrefix(prefix.id, prefix.question, list(prefix.steps), list(candidates))
    t = len(prefix.steps)
    continuations = [[*prefix.steps, c] for c in candidates]
    selections = await asyncio.gather(
        *(
            scorer.select_criteria(prefix.question, s, t, render_context(s, t, scorer.settings.mu))
            for s in continuations
        )
    )
    chosen: set[str] = set()
    for selection in selections:
        if isinstance(selection, LLMFailure):
            scored.errors.append(f"{selection.stage}: {selection.reason}")
        else:
            chosen.update(selection)
    order = {c: i for i, c in enumerate(scorer.texts)}
    scored.criteria = sorted(chosen, key=lambda c: order.get(c, len(order)))
    if not scored.criteria:
        return scored
    results = await asyncio.gather(
        *(scorer.score_on(prefix.question, s, t, scored.criteria) for s in continuations)
    )
    kept: list[int] = []
    for j, result in enumerate(results):
        if isinstance(result, LLMFailure):
            scored.errors.append(f"candidate {j}: {result.stage}: {result.reason}")
        else:
            kept.append(j)
            scored.vectors.append([c.score for c in result])
    scored.candidates = [candidates[j] for j in kept]
    if len(scored.vectors) >= 2:
        scored.pairs = preference_pairs(np.array(scored.vectors))
    return scored


def dpo_rows(scored: ScoredPrefix, *, conversational: bool = False) -> list[dict[str, Any]]:
    """TRL DPO lines for one prefix: ``prompt``/``chosen``/``rejected`` plus metadata.

    Example:
        >>> s = ScoredPrefix("p", "1+1?", [], ["2", "3"], ["c1"], [[1.0], [0.0]], [],
        ...                  [(0, 1, 1.0)])
        >>> row = dpo_rows(s)[0]
        >>> row["prompt"], row["chosen"], row["rejected"], row["margin"]
        ('1+1?\\nStep 1:', ' 2', ' 3', 1.0)
        >>> dpo_rows(s, conversational=True)[0]["chosen"]
        [{'role': 'assistant', 'content': '2'}]
    """
    prompt = prompt_text(scored.question, scored.steps)
    rows = []
    for chosen, rejected, margin in scored.pairs:
        row: dict[str, Any]
        if conversational:
            row = {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": scored.candidates[chosen]}],
                "rejected": [{"role": "assistant", "content": scored.candidates[rejected]}],
            }
        else:
            row = {
                "prompt": prompt,
                "chosen": " " + scored.candidates[chosen],
                "rejected": " " + scored.candidates[rejected],
            }
        row.update(
            prefix_id=scored.id,
            chosen_vector=scored.vectors[chosen],
            rejected_vector=scored.vectors[rejected],
            criteria_ids=scored.criteria,
            margin=margin,
        )
        rows.append(row)
    return rows


@dataclass
class PairsReport:
    """What one ``dgprm pairs`` invocation scored and what the export holds."""

    prefixes: int = 0
    skipped: int = 0  # scored by an earlier run
    skipped_with_errors: int = 0
    retried: int = 0  # records with errors dropped and scored again
    candidates: int = 0
    paired_prefixes: int = 0  # prefixes with at least one pair in the export
    pairs: int = 0
    no_pair: int = 0
    too_few: int = 0
    without_candidates: int = 0  # prefixes whose id is not in the given candidates
    wall_seconds: float = 0.0
    ledger: Ledger = field(default_factory=Ledger)

    def rows(self) -> list[tuple[str, str]]:
        sources = counted(self.paired_prefixes, "prefix", "prefixes")
        return [
            (
                "prefixes scored",
                f"{self.prefixes} "
                f"({earlier_run_note(self.skipped, self.skipped_with_errors, self.retried)})",
            ),
            ("candidates scored", str(self.candidates)),
            ("pairs exported", f"{self.pairs} from {sources}"),
            ("prefixes without a pair", f"{self.no_pair} (candidates mutually non-dominated)"),
            ("prefixes with < 2 scored candidates", str(self.too_few)),
            *(
                [("prefixes missing from the candidates", str(self.without_candidates))]
                if self.without_candidates
                else []
            ),
            *self.ledger.summary_rows(self.prefixes, "prefix"),
            ("wall time", f"{self.wall_seconds:.1f} s"),
        ]


def export_pairs(
    scored_path: str | Path,
    out: str | Path,
    ids: list[str],
    report: PairsReport,
    *,
    conversational: bool = False,
) -> None:
    """Write the DPO lines of the prefixes ``ids`` (in that order) from ``scored_path``."""
    by_id = {}
    for _, row in iter_json_lines(scored_path):
        by_id[row["id"]] = ScoredPrefix(**row)
    rows: list[dict[str, Any]] = []
    for prefix_id in ids:
        scored = by_id[prefix_id]
        if len(scored.vectors) < 2:
            report.too_few += 1
        elif not scored.pairs:
            report.no_pair += 1
        else:
            report.paired_prefixes += 1
        rows.extend(dpo_rows(scored, conversational=conversational))
    report.pairs = write_jsonl(out, rows)


async def score_prefixes(
    scorer: StepScorer,
    prefixes: list[Prefix],
    scored_out: str | Path,
    *,
    candidates: dict[str, list[str]] | None = None,
    policy: LLMClient | None = None,
    n: int = 4,
    temperature: float = 0.8,
    seed: int = 0,
    concurrency: int = 4,
    progress: Progress | None = None,
    retry_errors: bool = False,
) -> PairsReport:
    """Score the candidates of every prefix not yet in ``scored_out`` (resumable; with
    ``retry_errors``, prefixes whose record has errors are scored again).

    Candidates come from ``candidates`` (prefix id → texts) or are sampled from
    ``policy``. Each finished prefix is appended to ``scored_out`` as one line.
    """
    started = time.perf_counter()
    progress = progress or NoProgress()
    report = PairsReport()
    clients = [scorer.client] + (
        [policy] if policy is not None and policy is not scorer.client else []
    )
    before = [c.ledger.copy() for c in clients]
    with ResumableJsonl(
        scored_out, failed=has_errors, retry_failed=retry_errors, among={p.id for p in prefixes}
    ) as sink:
        todo = [p for p in prefixes if p.id not in sink.done]
        report.skipped = len(prefixes) - len(todo)
        report.skipped_with_errors, report.retried = sink.failed_kept, sink.retried
        progress.start("prefixes", len(todo))

        async def one(prefix: Prefix) -> None:
            errors: list[str] = []
            if candidates is not None:
                report.without_candidates += prefix.id not in candidates
                texts = list(dict.fromkeys(c.strip() for c in candidates.get(prefix.id, [])))
            else:
                assert policy is not None
                texts, errors = await sample_candidates(
                    policy, prefix, n, temperature=temperature, seed=seed
                )
            scored = await score_prefix(scorer, prefix, texts)
            scored.errors[:0] = errors
            sink.write(scored.to_dict())
            report.prefixes += 1
            report.candidates += len(scored.vectors)
            progress.advance("prefixes")

        await for_each_bounded(todo, one, concurrency)
    for client, snapshot in zip(clients, before, strict=True):
        report.ledger.add(client.ledger.since(snapshot))
    report.wall_seconds = time.perf_counter() - started
    return report
