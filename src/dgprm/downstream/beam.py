"""Step-level beam search guided by a PRM, the way HuggingFace's search-and-learn does
it for math (``sal/search/beam_search.py``), over one-step generations.

With ``width`` B and ``expansions`` E (N = B·E samples per step):

1. the first step is sampled N times from the question (distinct seeds);
2. every child is scored by the PRM and gets the aggregated score of its steps
   (``agg``: ``last`` by default, as in search-and-learn; ``min``/``prod``/``mean``);
3. a child whose step is an answer line is *finished*; of the others, the B best
   scores stay active and each is expanded into E next steps, and so on;
4. at the last allowed step (``max_steps``) the policy is told to write the answer
   line, and every child of that step is finished;
5. the search stops when N beams have finished, none is active, or ``max_steps`` is
   reached; the finished beam with the best score and an extractable answer is the
   pick (:func:`dgprm.downstream.strategies.best_of_n`: ties to the earliest finished).

Children with an empty step or a failed policy call are dropped, identical children
(same steps) are kept once, and a child whose scoring failed is dropped; all are
counted in the :class:`BeamResult`.

**Cost.** At most ``max_steps`` · N policy calls and as many step scorings. A PRM
with ``ascore_step`` (:class:`~dgprm.scoring.StepScorer`) scores only the new step
of a child, since the earlier steps' rewards travel with the beam: 3 LLM calls per
scoring for ``dgprm`` (2 with ``merge_r_phi``), 1 for ``critic``. Any other PRM
(``orm``) is called on the whole partial solution: 1 call per child for ``orm``.
So a search costs at most ``max_steps · N · (1 + c)`` LLM calls, c the calls per
scoring, and stops early when beams finish.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from dgprm.downstream.answers import parse_step, render_question
from dgprm.downstream.policy import step_request
from dgprm.downstream.prm import AGGREGATIONS, PRM, StepwisePRM, solution_score
from dgprm.downstream.strategies import Pick, best_of_n
from dgprm.downstream.tasks import TaskRecord
from dgprm.errors import InputError
from dgprm.llm import LLMClient, LLMFailure
from dgprm.scoring import StepReward

NO_BEAM = "no beam finished"


@dataclass(frozen=True)
class BeamOptions:
    """Beam width B (beams kept per step), expansions E per kept beam, the step limit,
    the step aggregation that ranks beams, and the policy's sampling.

    Example:
        >>> BeamOptions.for_n(8, expansions=4).width, BeamOptions.for_n(1, expansions=4).expansions
        (2, 1)
    """

    width: int = 1
    expansions: int = 4
    max_steps: int = 8
    agg: str = "last"
    temperature: float = 0.8
    seed: int = 0
    max_tokens: int = 128

    def __post_init__(self) -> None:
        if self.width < 1 or self.expansions < 1 or self.max_steps < 1:
            raise InputError("beam width, expansions and max steps must be at least 1")
        if self.agg not in AGGREGATIONS:
            raise InputError(f"unknown aggregation {self.agg!r}; choose {', '.join(AGGREGATIONS)}")

    @property
    def n(self) -> int:
        """Samples per step: B·E."""
        return self.width * self.expansions

    @classmethod
    def for_n(cls, n: int, *, expansions: int, **options: Any) -> BeamOptions:
        """The beam with N = ``n`` samples per step: E = min(``expansions``, N), B = N / E
        (refused when E does not divide N)."""
        e = min(expansions, n)
        if n < 1 or n % e:
            raise InputError(f"beam search: N = {n} is not a multiple of expansions = {e}")
        return cls(width=n // e, expansions=e, **options)


@dataclass
class Beam:
    """A partial (or finished) solution: its steps, their rewards and its score."""

    steps: list[str]
    rewards: list[StepReward] = field(default_factory=list)
    answer: str | None = None
    final: bool = False
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "rewards": [r.to_dict() for r in self.rewards],
            "answer": self.answer,
            "final": self.final,
            "score": self.score,
        }


@dataclass
class BeamResult:
    """The pick, every finished beam (in finishing order) and what the search spent."""

    pick: Pick
    finished: list[Beam] = field(default_factory=list)
    iterations: int = 0
    generations: int = 0  # policy calls requested
    scorings: int = 0  # PRM scorings requested (one new step, or one partial solution)
    policy_errors: int = 0
    empty_steps: int = 0
    duplicates: int = 0
    scoring_errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.pick.answer,
            "beam": self.pick.candidate,
            "score": self.pick.score,
            "reason": self.pick.reason,
            "finished": [b.to_dict() for b in self.finished],
            "iterations": self.iterations,
            "generations": self.generations,
            "scorings": self.scorings,
            "policy_errors": self.policy_errors,
            "empty_steps": self.empty_steps,
            "duplicates": self.duplicates,
            "scoring_errors": self.scoring_errors,
        }


async def _score(prm: PRM, question: str, parent: Beam, steps: list[str]) -> list[StepReward]:
    if isinstance(prm, StepwisePRM):
        return [*parent.rewards, await prm.ascore_step(question, steps, len(steps) - 1)]
    return await prm.ascore(question, steps)


async def beam_search(
    policy: LLMClient, prm: PRM, record: TaskRecord, options: BeamOptions
) -> BeamResult:
    """Beam search for ``record`` (see the module docstring for the algorithm and cost).

    Example (see tests/test_downstream_search.py for runnable cases):
        >>> options = BeamOptions(width=2)
        >>> result = await beam_search(policy, critic, record, options)  # doctest: +SKIP
        >>> result.pick.answer, len(result.finished)                    # doctest: +SKIP
        ('B', 8)
    """
    question = render_question(record)
    result = BeamResult(Pick(None))
    active = [Beam([])]
    o = options
    for t in range(o.max_steps):
        result.iterations += 1
        last = t == o.max_steps - 1
        per_beam = o.n if t == 0 else o.expansions
        jobs = [
            (parent, o.seed + t * o.n + i * per_beam + j)
            for i, parent in enumerate(active)
            for j in range(per_beam)
        ]
        result.generations += len(jobs)
        answers = await asyncio.gather(
            *(
                policy.generate(
                    step_request(
                        record,
                        parent.steps,
                        final=last,
                        temperature=o.temperature,
                        seed=seed,
                        max_tokens=o.max_tokens,
                    ),
                    stage="policy",
                    question=record.id,
                    step=t,
                )
                for parent, seed in jobs
            )
        )
        children: list[tuple[Beam, Beam]] = []
        seen: set[tuple[str, ...]] = set()
        for (parent, _), answer in zip(jobs, answers, strict=True):
            if isinstance(answer, LLMFailure):
                result.policy_errors += 1
                continue
            step, extracted, final = parse_step(answer.text, record)
            if not step:
                result.empty_steps += 1
                continue
            steps = [*parent.steps, step]
            if tuple(steps) in seen:
                result.duplicates += 1
                continue
            seen.add(tuple(steps))
            children.append((parent, Beam(steps, answer=extracted, final=final or last)))
        result.scorings += len(children)
        rewards = await asyncio.gather(*(_score(prm, question, p, c.steps) for p, c in children))
        scored: list[Beam] = []
        for (_, child), got in zip(children, rewards, strict=True):
            child.rewards = got
            child.score = solution_score(got, o.agg)
            if child.score is None:
                errors = [r.error for r in got if r.error] or ["no rewards"]
                result.scoring_errors.append(f"step {t + 1}: {errors[0]}")
                continue
            scored.append(child)
        result.finished += [c for c in scored if c.final]
        going = [c for c in scored if not c.final]
        # sorted() is stable: equal scores keep generation order
        active = sorted(going, key=lambda c: -(c.score or 0.0))[: o.width]
        if not active or len(result.finished) >= o.n:
            break
    if not result.finished:
        dropped = (
            f"{len(result.scoring_errors)} scorings failed, {result.policy_errors} policy "
            f"errors, {result.empty_steps} empty steps"
        )
        result.pick = Pick(None, reason=f"{NO_BEAM} ({dropped})")
        return result
    result.pick = best_of_n([b.answer for b in result.finished], [b.score for b in result.finished])
    return result
