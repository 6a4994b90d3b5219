"""Prompting the policy: whole solutions (sampling, greedy) and single next steps (beam).

Candidate ``j`` of a question is sampled with seed ``seed + j``; the request is
otherwise the same for every ``j``. Sampling ``N`` candidates and then ``M < N``
therefore gives the first ``M`` of the same ``N`` (the response cache answers them),
which is what makes comparisons across ``N`` paired.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from dgprm.downstream.answers import MAX_STEPS, answer_form, parse_solution, render_question
from dgprm.downstream.tasks import TaskRecord
from dgprm.llm import ChatRequest, LLMClient, LLMFailure
from dgprm.prompts import load_template

SOLVE_PROMPT = "solve"
STEP_PROMPT = "solve_step"


@dataclass
class Candidate:
    """One sampled solution: its text, steps, extracted answer, or the policy's error."""

    index: int
    seed: int
    text: str | None
    steps: list[str] = field(default_factory=list)
    answer: str | None = None
    error: str | None = None
    usage: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "index": self.index,
            "seed": self.seed,
            "text": self.text,
            "steps": self.steps,
            "answer": self.answer,
            "usage": self.usage,
            "seconds": round(self.seconds, 3),
        }
        if self.error is not None:
            row["error"] = self.error
        return row

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Candidate:
        return cls(
            row["index"],
            row["seed"],
            row["text"],
            list(row["steps"]),
            row["answer"],
            row.get("error"),
            dict(row.get("usage", {})),
            float(row.get("seconds", 0.0)),
        )


def solve_request(
    record: TaskRecord,
    *,
    temperature: float,
    seed: int,
    max_tokens: int = 384,
    max_steps: int = 8,
) -> ChatRequest:
    """The request for one whole solution of ``record``.

    Example:
        >>> r = TaskRecord(id="q", question="Is ice cold?", answer="yes")
        >>> req = solve_request(r, temperature=0.8, seed=3)
        >>> text = req.messages[1]["content"]
        >>> req.seed, req.template.startswith("solve@"), "Answer: yes or no" in text
        (3, True, True)
    """
    return load_template(SOLVE_PROMPT).render(
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        question=render_question(record),
        max_steps=str(max_steps),
        answer_form=answer_form(record),
    )


def step_request(
    record: TaskRecord,
    steps: list[str],
    *,
    final: bool,
    temperature: float,
    seed: int,
    max_tokens: int = 128,
) -> ChatRequest:
    """The request for the next step after ``steps`` (beam search); with ``final``, the
    policy is told to write the answer line now.

    Example:
        >>> r = TaskRecord(id="q", question="Is ice cold?", answer="yes")
        >>> text = step_request(r, ["Ice is frozen."], final=True, temperature=0.8,
        ...                     seed=0).messages[1]["content"]
        >>> "Step 1: Ice is frozen." in text, "Answer: yes or no" in text
        (True, True)
    """
    listing = "\n".join(f"Step {i + 1}: {s.strip()}" for i, s in enumerate(steps))
    form = answer_form(record)
    if final:
        instruction = f'This is the last step: write only the final line "Answer: {form}".'
    else:
        instruction = (
            f"Write only step {len(steps) + 1}, or, if the steps so far settle the answer, "
            f'only the final line "Answer: {form}".'
        )
    return load_template(STEP_PROMPT).render(
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        question=render_question(record),
        steps=listing or "(none yet)",
        instruction=instruction,
    )


async def solve_once(
    policy: LLMClient,
    record: TaskRecord,
    index: int,
    *,
    temperature: float,
    seed: int,
    max_tokens: int = 384,
    max_steps: int = 8,
) -> Candidate:
    """One solution of ``record``, parsed; a failed call is a candidate with ``error``."""
    request = solve_request(
        record, temperature=temperature, seed=seed, max_tokens=max_tokens, max_steps=max_steps
    )
    started = time.perf_counter()
    with policy.scoped() as usage:
        completion = await policy.generate(request, stage="policy", question=record.id)
    seconds = time.perf_counter() - started
    spent = usage.to_dict()
    spent.pop("llm_seconds", None)  # only the client's own ledger times calls
    if isinstance(completion, LLMFailure):
        return Candidate(index, seed, None, error=f"policy: {completion.reason}", usage=spent)
    solution = parse_solution(completion.text, record, max(MAX_STEPS, max_steps + 1))
    return Candidate(
        index, seed, completion.text, solution.steps, solution.answer, None, spent, seconds
    )


async def sample_solutions(
    policy: LLMClient,
    record: TaskRecord,
    n: int,
    *,
    temperature: float,
    seed: int = 0,
    max_tokens: int = 384,
    max_steps: int = 8,
) -> list[Candidate]:
    """``n`` sampled solutions, candidate ``j`` with seed ``seed + j`` (all kept, in order:
    duplicates are votes, and failures are counted, not dropped)."""
    return list(
        await asyncio.gather(
            *(
                solve_once(
                    policy,
                    record,
                    j,
                    temperature=temperature,
                    seed=seed + j,
                    max_tokens=max_tokens,
                    max_steps=max_steps,
                )
                for j in range(n)
            )
        )
    )
