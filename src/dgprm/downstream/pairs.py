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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgprm.config import RuntimeConfig
from dgprm.downstream.answers import render_question
from dgprm.downstream.policy import Candidate, sample_solutions
from dgprm.downstream.tasks import TaskRecord
from dgprm.errors import InputError
from dgprm.files import write_jsonl
from dgprm.llm import LLMClient
from dgprm.progress import Progress, counted
from dgprm.records import iter_json_lines
from dgprm.runs import RunStats, run_resumable


@dataclass
class TaskPairsReport(RunStats):
    """What one ``dgprm data task-pairs`` invocation sampled and paired."""

    candidates: int = 0
    correct: int = 0
    incorrect: int = 0
    unextractable: int = 0
    pairs: int = 0
    without_pair: int = 0  # questions with no correct or no incorrect candidate

    @property
    def questions(self) -> int:
        """Questions sampled by this run."""
        return self.done

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("questions sampled", f"{self.questions} ({self.earlier_note()})"),
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
            *self.usage_rows(self.questions, "question"),
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
    report = TaskPairsReport()
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

    async def one(record: TaskRecord) -> dict[str, Any]:
        candidates = await sample_solutions(
            policy,
            record,
            n,
            temperature=temperature,
            seed=seed,
            max_tokens=max_tokens,
            max_steps=max_steps,
        )
        return {
            "id": record.id,
            "sampling": sampling,
            "gold": record.answer,
            "candidates": [c.to_dict() for c in candidates],
            "errors": [f"candidate {c.index}: {c.error}" for c in candidates if c.error],
        }

    await run_resumable(
        records,
        side,
        one,
        report,
        clients=[policy],
        concurrency=concurrency,
        progress=progress,
        stage="sample",
        retry_errors=retry_errors,
    )
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
    return report


async def amake_task_pairs(
    task: str,
    out: str | Path,
    *,
    data: str | Path | None = None,
    split: str = "train",
    limit: int | None = None,
    policy: str = "embedded",
    runtime: RuntimeConfig | None = None,
    n: int = 4,
    temperature: float = 0.8,
    seed: int = 0,
    pairs_per_question: int = 1,
    retry_errors: bool = False,
    progress: Progress | None = None,
) -> TaskPairsReport:
    """``dgprm data task-pairs``: sample ``n`` solutions from ``policy`` (an LLM spec) for
    the first ``limit`` questions of ``task``'s ``split`` and write, per question, a correct
    solution (chosen) against an incorrect one (rejected): the paper's construction of the
    pairs a tree is built from."""
    from dgprm.downstream.tasks import load_task
    from dgprm.files import PREFERENCE_PAIRS, check_output_file
    from dgprm.llm import make_client

    check_output_file(out, PREFERENCE_PAIRS, [data])
    runtime = runtime or RuntimeConfig()
    records = load_task(task, data, split, limit)
    client = make_client(runtime.replace(llm=policy))
    try:
        return await task_pairs(
            records,
            out,
            policy=client,
            domain=task,
            n=n,
            temperature=temperature,
            seed=seed,
            pairs_per_question=pairs_per_question,
            concurrency=runtime.concurrency,
            progress=progress,
            retry_errors=retry_errors,
        )
    finally:
        await client.aclose()


def prefixes_from_samples(
    sampled: str | Path, out: str | Path, *, records: list[TaskRecord]
) -> int:
    """Prefixes for ``dgprm pairs`` from the solutions ``task-pairs`` sampled (its
    ``OUT.sampled.jsonl``): for each question, every step boundary of its first solution
    with steps — the question with the steps before the boundary (none for the first) — so
    Pareto pairs are made at every step of the policy's own solutions. Returns the count.

    ``records`` give the questions as the policy saw them (with the choices).
    """
    from dgprm.files import TRAJECTORIES, check_output_file

    check_output_file(out, TRAJECTORIES, [sampled])
    question = {r.id: render_question(r) for r in records}
    rows: list[dict[str, Any]] = []
    for _, row in iter_json_lines(sampled):
        if row["id"] not in question:
            continue
        solutions = [Candidate.from_dict(c) for c in row["candidates"]]
        steps = next((c.steps for c in solutions if c.steps), [])
        for t in range(len(steps)):
            rows.append(
                {"id": f"{row['id']}/{t}", "question": question[row["id"]], "steps": steps[:t]}
            )
    if not rows:
        raise InputError(f"{sampled}: no sampled solution with steps for these questions")
    return write_jsonl(out, rows)
