"""Selection over N sampled solutions: majority vote, best-of-N and weighted vote.

Pure functions of the candidates' extracted answers (``None`` = unextractable) and,
for the PRM-guided ones, their solution scores (``None`` = the PRM's scoring failed,
see :func:`dgprm.downstream.prm.solution_score`). The rules, the same everywhere:

- a candidate without an extractable answer never wins and gets no vote;
- a candidate whose scoring failed takes no part in best-of-N or weighted vote (it is
  counted by the runner, never given a default score);
- ties go to the earliest: for best-of-N the lowest candidate index; for the votes,
  the answer whose first eligible candidate comes first. Candidates are i.i.d.
  samples, so "earliest" is a fair coin that is also reproducible.
- when no candidate is eligible the pick has no answer and says why; it counts as wrong.

Example:
    >>> answers = ["A", "B", None, "B", "A"]
    >>> majority_vote(answers).answer                       # 2–2 tie: A came first
    'A'
    >>> best_of_n(answers, [0.2, 0.9, 1.0, None, 0.5])      # None (unextractable) can't win
    Pick(answer='B', candidate=1, score=0.9, reason=None)
    >>> weighted_vote(answers, [0.2, 0.9, 1.0, None, 0.5]).answer   # A: 0.7, B: 0.9
    'B'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

NO_ANSWER = "no candidate has an extractable answer"
NOT_SCORED = "no candidate with an answer has a score (scoring failed)"


@dataclass(frozen=True)
class Pick:
    """A strategy's choice: the answer (``None`` with a ``reason`` when there is none),
    the candidate it came from, and the winning score (votes for majority, the summed
    scores for weighted vote, the solution score for best-of-N)."""

    answer: str | None
    candidate: int | None = None
    score: float | None = None
    reason: str | None = None


def _check(answers: Sequence[str | None], scores: Sequence[float | None]) -> None:
    if len(answers) != len(scores):
        raise ValueError(f"{len(answers)} answers but {len(scores)} scores")


def majority_vote(answers: Sequence[str | None]) -> Pick:
    """The most frequent extractable answer (tie: the one first seen).

    Example:
        >>> majority_vote(["B", None, "A", "A"])
        Pick(answer='A', candidate=2, score=2.0, reason=None)
        >>> majority_vote([None, None]).reason
        'no candidate has an extractable answer'
    """
    votes: dict[str, list[int]] = {}
    for i, answer in enumerate(answers):
        if answer is not None:
            votes.setdefault(answer, []).append(i)
    if not votes:
        return Pick(None, reason=NO_ANSWER)
    # dicts keep first-seen order and max() keeps the first of equal keys
    answer = max(votes, key=lambda a: len(votes[a]))
    return Pick(answer, votes[answer][0], float(len(votes[answer])))


def best_of_n(answers: Sequence[str | None], scores: Sequence[float | None]) -> Pick:
    """The candidate with the highest solution score among those with an answer and a
    score (tie: the lowest index).

    Example:
        >>> best_of_n(["A", "B", "C"], [0.5, 0.5, None])
        Pick(answer='A', candidate=0, score=0.5, reason=None)
        >>> best_of_n(["A", None], [None, 0.9]).reason
        'no candidate with an answer has a score (scoring failed)'
    """
    _check(answers, scores)
    if all(a is None for a in answers):
        return Pick(None, reason=NO_ANSWER)
    eligible = [
        (s, i)
        for i, (a, s) in enumerate(zip(answers, scores, strict=True))
        if a is not None and s is not None
    ]
    if not eligible:
        return Pick(None, reason=NOT_SCORED)
    score, index = max(eligible, key=lambda e: (e[0], -e[1]))
    return Pick(answers[index], index, score)


def weighted_vote(answers: Sequence[str | None], scores: Sequence[float | None]) -> Pick:
    """The answer with the largest sum of solution scores over the candidates giving it
    (with an answer and a score; sums compared to 9 decimals; tie: the answer first seen).

    Example:
        >>> weighted_vote(["A", "B", "B"], [0.9, 0.4, 0.5])   # 0.9 vs 0.9: a tie, A first
        Pick(answer='A', candidate=0, score=0.9, reason=None)
    """
    _check(answers, scores)
    if all(a is None for a in answers):
        return Pick(None, reason=NO_ANSWER)
    totals: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, (answer, score) in enumerate(zip(answers, scores, strict=True)):
        if answer is not None and score is not None:
            totals[answer] = totals.get(answer, 0.0) + score
            first.setdefault(answer, i)
    if not totals:
        return Pick(None, reason=NOT_SCORED)
    answer = max(totals, key=lambda a: round(totals[a], 9))
    return Pick(answer, first[answer], round(totals[answer], 9))
