"""Preference pairs from a task's training questions: a correct sampled solution
(chosen) against an incorrect one (rejected) of the same question.

For each question, ``n`` solutions are sampled (seeds ``seed``, ``seed + 1``, …) and
their answers extracted. Candidates whose answer equals the gold answer are
*correct*, those with another extractable answer *incorrect*; candidates without an
extractable answer (or with a policy error) take no part — they are neither right
nor demonstrably wrong. Up to ``pairs_per_question`` disjoint pairs are made, the
k-th correct candidate with the k-th incorrect one, in sampling order.

The sampled candidates go to ``OUT.sampled.jsonl`` as questions finish (re-running
continues from it); the pairs file is then written atomically, in dgprm's
preference-pair format: ``{"id", "question", "chosen": [steps], "rejected": [steps],
"domain"}`` (``question`` as the policy saw it, with its choices).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgprm.downstream.answers import render_question
from dgprm.downstream.policy import Candidate, sample_solutions
from dgprm.downstream.tasks import TaskRecord
from dgprm.llm import Ledger, LLMClient
from dgprm.progress import NoProgress, Progress, counted
from dgprm.records import (
    InputError,
    ResumableJsonl,
    earlier_run_note,
    has_errors,
    iter_json_lines,
    write_jsonl,
)
from dgprm.runner import for_each_bounded


@dataclass
class TaskPairsReport:
    questions: int = 0
    skipped: int = 0
    skipped_with_errors: int = 0
    retried: int = 0
    candidates: int = 0
    correct: int = 0
    incorrect: int = 0
    unextractable: int = 0
    pairs: int = 0
    without_pair: int = 0  # questions with no correct or no incorrect candidate
    wall_seconds: float = 0.0
    ledger: Ledger = field(default_factory=Ledger)

    def rows(self) -> list[tuple[str, str]]:
        note = earlier_run_note(self.skipped, self.skipped_with_errors, self.retried)
        return [
            ("questions sampled", f"{self.questions} ({note})"),
            (
                "candidates",
                f"{self.candidates}: {self.correct} correct, {self.incorrect} incorrect, "
                f"{self.unextractable} without an extractable answer",
            ),
            (
                "pairs",
                f"{counted(self.pairs, 'pair')}; {self.without_pair} questions without "
                "both a correct and an incorrect candidate",
            ),
            *self.ledger.summary_rows(self.questions, "question"),
            ("wall time", f"{self.wall_seconds:.1f} s"),
        ]


def question_pairs(
    record: TaskRecord, candidates: list[Candidate], domain: str, pairs_per_question: int = 1
) -> list[dict[str, Any]]:
    """Pairs of one question: the k-th correct candidate with the k-th incorrect one.

    Example:
        >>> r = TaskRecord(id="q", question="Is ice cold?", answer="yes")
        >>> c = [Candidate(0, 0, "", ["Cold.", "Answer: yes"], "yes"),
        ...      Candidate(1, 1, "", ["Hot."], None),
        ...      Candidate(2, 2, "", ["Warm.", "Answer: no"], "no")]
        >>> question_pairs(r, c, "strategyqa")
        [{'id': 'q/0-2', 'question': 'Is ice cold?', 'chosen': ['Cold.', 'Answer: yes'], \
'rejected': ['Warm.', 'Answer: no'], 'domain': 'strategyqa'}]
    """
    usable = [c for c in candidates if c.answer is not None and c.steps and c.error is None]
    right = [c for c in usable if c.answer == record.answer]
    wrong = [c for c in usable if c.answer != record.answer]
    question = render_question(record)
    return [
        {
            "id": f"{record.id}/{good.index}-{bad.index}",
            "question": question,
            "chosen": good.steps,
            "rejected": bad.steps,
            "domain": domain,
        }
        for good, bad in list(zip(right, wrong, strict=False))[:pairs_per_question]
    ]


def sampled_path(out: str | Path) -> Path:
    """Where the sampled candidates of ``out`` are kept (``OUT.sampled.jsonl``)."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".sampled.jsonl")


async def task_pairs(
    records: list[TaskRecord],
    out: str | Path,
    *,
    policy: LLMClient,
    domain: str,
    n: int = 4,
    temperature: float = 0.8,
    seed: int = 0,
    max_tokens: int = 384,
    max_steps: int = 8,
    pairs_per_question: int = 1,
    concurrency: int = 4,
    progress: Progress | None = None,
    retry_errors: bool = False,
) -> TaskPairsReport:
    """Sample ``n`` solutions per question, keep them in ``OUT.sampled.jsonl`` (resumable)
    and write the correct-vs-incorrect pairs of every question in ``records`` to ``out``.
    """
    if n < 2 or temperature <= 0:
        raise InputError("task pairs need --n ≥ 2 and a temperature > 0")
    if pairs_per_question < 1:
        raise InputError("pairs per question must be at least 1")
    started = time.perf_counter()
    progress = progress or NoProgress()
    report = TaskPairsReport()
    before = policy.ledger.copy()
    side = sampled_path(out)
    ids = {r.id for r in records}
    sampling = {
        "policy": policy.model_id,
        "n": n,
        "temperature": temperature,
        "seed": seed,
        "max_tokens": max_tokens,
        "max_steps": max_steps,
    }
    if side.exists():
        for number, row in iter_json_lines(side):
            if row.get("sampling") != sampling:
                raise InputError(
                    f"{side}:{number}: sampled with other settings ({row.get('sampling')}); "
                    "use another -o or delete the file"
                )
    with ResumableJsonl(side, failed=has_errors, retry_failed=retry_errors, among=ids) as sink:
        todo = [r for r in records if r.id not in sink.done]
        report.skipped = len(records) - len(todo)
        report.skipped_with_errors, report.retried = sink.failed_kept, sink.retried
        progress.start("sample", len(todo))

        async def one(record: TaskRecord) -> None:
            candidates = await sample_solutions(
                policy,
                record,
                n,
                temperature=temperature,
                seed=seed,
                max_tokens=max_tokens,
                max_steps=max_steps,
            )
            sink.write(
                {
                    "id": record.id,
                    "sampling": sampling,
                    "gold": record.answer,
                    "candidates": [c.to_dict() for c in candidates],
                    "errors": [f"candidate {c.index}: {c.error}" for c in candidates if c.error],
                }
            )
            report.questions += 1
            progress.advance("sample")

        await for_each_bounded(todo, one, concurrency)
    sampled = {row["id"]: row for _, row in iter_json_lines(side) if row["id"] in ids}
    pairs: list[dict[str, Any]] = []
    for record in records:
        candidates = [Candidate.from_dict(c) for c in sampled[record.id]["candidates"]]
        report.candidates += len(candidates)
        report.correct += sum(c.answer == record.answer for c in candidates)
        report.unextractable += sum(c.answer is None for c in candidates)
        report.incorrect += sum(c.answer not in (None, record.answer) for c in candidates)
        made = question_pairs(record, candidates, domain, pairs_per_question)
        report.without_pair += not made
        pairs += made
    report.pairs = write_jsonl(out, pairs)
    report.ledger = policy.ledger.since(before)
    report.wall_seconds = time.perf_counter() - started
    return report
