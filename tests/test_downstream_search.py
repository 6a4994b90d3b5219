"""Selection strategies on constructed candidates, solution scores, the outcome judge,
paired sampling and PRM-guided beam search with a scripted policy and scorer."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from dgprm.config import ScoringConfig
from dgprm.downstream.beam import BeamOptions, beam_search
from dgprm.downstream.policy import sample_solutions
from dgprm.downstream.prm import (
    PRM,
    OutcomeJudge,
    StepwisePRM,
    make_prms,
    solution_score,
)
from dgprm.downstream.strategies import (
    NO_ANSWER,
    NOT_SCORED,
    Pick,
    best_of_n,
    majority_vote,
    weighted_vote,
)
from dgprm.downstream.tasks import Choice, TaskRecord
from dgprm.errors import InputError
from dgprm.llm import ChatRequest, ResponseCache
from dgprm.scoring import StepReward, StepScorer
from tests.conftest import user_text

RECORD = TaskRecord(
    id="q1",
    question="Which melts in the sun?",
    choices=[Choice(label="A", text="rock"), Choice(label="B", text="ice")],
    answer="B",
)


def rewards(*values: float | None) -> list[StepReward]:
    return [
        StepReward(i, reward=v, error=None if v is not None else "score: unparseable")
        for i, v in enumerate(values)
    ]


# ------------------------------------------------------------------ strategies ---


def test_majority_vote_counts_votes_and_breaks_ties_by_first_seen():
    assert majority_vote(["A", "B", "B", None]) == Pick("B", 1, 2.0)
    assert majority_vote(["B", "A", "A", "B"]).answer == "B"  # 2–2: B was seen first
    assert majority_vote([None, "A", None, "B", "B", "A"]).answer == "A"
    assert majority_vote([None, None]) == Pick(None, reason=NO_ANSWER)
    assert majority_vote([]) == Pick(None, reason=NO_ANSWER)


def test_best_of_n_takes_the_highest_score_and_the_lowest_index_on_ties():
    assert best_of_n(["A", "B", "B"], [0.3, 0.8, 0.8]) == Pick("B", 1, 0.8)
    # an unextractable answer never wins, whatever its score
    assert best_of_n([None, "A"], [1.0, 0.1]) == Pick("A", 1, 0.1)
    # a candidate whose scoring failed takes no part
    assert best_of_n(["A", "B"], [None, 0.2]) == Pick("B", 1, 0.2)
    assert best_of_n(["A", "B"], [None, None]) == Pick(None, reason=NOT_SCORED)
    assert best_of_n([None, None], [0.5, 0.5]) == Pick(None, reason=NO_ANSWER)
    with pytest.raises(ValueError):
        best_of_n(["A"], [0.1, 0.2])


def test_weighted_vote_sums_scores_per_answer():
    # A: 0.4 + 0.4 = 0.8 beats B: 0.7, though B has the single best candidate
    assert weighted_vote(["A", "B", "A"], [0.4, 0.7, 0.4]) == Pick("A", 0, 0.8)
    # 0.1 + 0.2 = 0.30000000000000004 ties 0.3: the tie goes to the answer seen first
    assert weighted_vote(["B", "A", "A"], [0.3, 0.1, 0.2]).answer == "B"
    assert weighted_vote(["A", None, "B"], [None, 0.9, 0.1]) == Pick("B", 2, 0.1)
    assert weighted_vote(["A"], [None]).reason == NOT_SCORED


def test_solution_score_by_hand():
    steps = rewards(0.9, 0.5, 0.8)
    assert solution_score(steps, "min") == 0.5
    assert solution_score(steps, "last") == 0.8
    assert solution_score(steps, "prod") == pytest.approx(0.36)
    assert solution_score(steps, "mean") == pytest.approx(2.2 / 3)
    # a failed step leaves the solution without a score, for every aggregation
    assert {solution_score(rewards(0.9, None), a) for a in ("min", "last", "prod", "mean")} == {
        None
    }
    assert solution_score([], "min") is None
    with pytest.raises(ValueError):
        solution_score(steps, "max")


def test_best_of_n_picks_differ_by_aggregation():
    answers = ["A", "B"]
    a, b = rewards(0.2, 0.9), rewards(0.6, 0.7)  # A: min .2 last .9; B: min .6 last .7
    scores = {agg: [solution_score(a, agg), solution_score(b, agg)] for agg in ("min", "last")}
    assert best_of_n(answers, scores["min"]).answer == "B"
    assert best_of_n(answers, scores["last"]).answer == "A"


# ---------------------------------------------------------- PRMs and the protocol ---


def critic_answers(request: ChatRequest) -> str:
    """The no-tree critic's score call: 9 for a step saying 'ice' or 'good', else 2."""
    assert request.template.startswith("score@"), request.template
    step = user_text(request).split("Step to evaluate:\n", 1)[1].split("\n\nCriteria:")[0]
    good = "ice" in step.lower() or "good" in step.lower() or "answer: b" in step.lower()
    return json.dumps({"scores": {"critic": 9 if good else 2}})


def test_the_three_prms_plug_into_the_protocol(scripted_client):
    client, _ = scripted_client(lambda r: "{}")
    named = make_prms(["critic", "orm", "none"], judge=client)
    assert [p.name for p in named] == ["critic", "orm"]
    assert all(isinstance(p.prm, PRM) for p in named)
    assert isinstance(named[0].prm, StepwisePRM) and not isinstance(named[1].prm, StepwisePRM)
    with pytest.raises(InputError, match="needs --tree"):
        make_prms(["dgprm"], judge=client)
    with pytest.raises(InputError, match="unknown PRM"):
        make_prms(["prm800k"], judge=client)


def test_outcome_judge_scores_the_whole_solution_once(scripted_client):
    seen = []

    def answer(request: ChatRequest) -> str:
        seen.append(user_text(request))
        return json.dumps({"score": 7 if "Ice" in user_text(request) else 1})

    client, backend = scripted_client(answer)
    judge = OutcomeJudge(client)
    got = asyncio.run(judge.ascore("Which melts?", ["Ice melts.", "Answer: B"]))
    assert [(r.index, r.reward, r.label) for r in got] == [(1, 0.7, True)]
    assert backend.stages() == ["outcome"] and "Step 2: Answer: B" in seen[0]
    assert {solution_score(got, a) for a in ("min", "last", "prod", "mean")} == {0.7}


def test_outcome_judge_failure_is_an_error_not_a_score(scripted_client):
    client, _ = scripted_client(lambda r: "no idea")
    got = asyncio.run(OutcomeJudge(client).ascore("q?", ["s"]))
    assert got[0].reward is None and got[0].error.startswith("orm: unparseable")
    assert solution_score(got, "last") is None and client.ledger.errors == 1


# ------------------------------------------------------------- paired sampling ---


def solve_answers(request: ChatRequest) -> str:
    """A policy whose answer depends only on the seed: B, A, unreadable, B, ..."""
    assert request.template.startswith("solve@")
    kind = request.seed % 3
    if kind == 0:
        return f"Step 1: Ice melts (seed {request.seed}).\nAnswer: B"
    if kind == 1:
        return f"Step 1: Rock melts (seed {request.seed}).\nAnswer: A"
    return "I am not sure."


def test_smaller_n_is_a_prefix_of_the_same_samples(scripted_client):
    cache = ResponseCache(":memory:")
    client, backend = scripted_client(solve_answers, cache=cache)
    eight = asyncio.run(sample_solutions(client, RECORD, 8, temperature=0.8, seed=10))
    assert [c.seed for c in eight] == list(range(10, 18))
    assert [c.answer for c in eight] == ["A", None, "B", "A", None, "B", "A", None]
    calls = client.ledger.llm_calls
    four = asyncio.run(sample_solutions(client, RECORD, 4, temperature=0.8, seed=10))
    assert [c.to_dict()["text"] for c in four] == [c.text for c in eight[:4]]
    assert client.ledger.llm_calls == calls and client.ledger.cache_hits == 4
    assert {r.temperature for r in backend.requests} == {0.8}
    assert all(c.usage["llm_calls"] == 1 for c in eight) and four[0].usage["cache_hits"] == 1


def test_a_failed_policy_call_is_a_candidate_with_an_error(scripted_client):
    from dgprm.llm import PermanentLLMError

    def answer(request: ChatRequest) -> str:
        if request.seed == 1:
            raise PermanentLLMError("model gone")
        return "Answer: B"

    client, _ = scripted_client(answer)
    got = asyncio.run(sample_solutions(client, RECORD, 2, temperature=0.8))
    assert got[0].answer == "B" and got[1].answer is None
    assert got[1].error == "policy: LLM call failed: model gone" and got[1].steps == []


# ----------------------------------------------------------------- beam search ---


def step_policy(request: ChatRequest) -> str:
    """One-step policy: at step 1 even seeds write a good clue, odd seeds a bad one; after
    a clue, even seeds answer B and odd seeds answer A. A final-step request answers."""
    assert request.template.startswith("solve_step@")
    text = user_text(request)
    done = re.findall(r"^Step \d+: (.*)$", text, flags=re.M)
    if "This is the last step" in text:
        return "Answer: A"
    if not done:
        return "Step 1: Ice is good at melting." if request.seed % 2 == 0 else "Step 1: Rock."
    return "Answer: B" if request.seed % 2 == 0 else "Answer: A"


def beam_clients(scripted_client):
    policy, policy_backend = scripted_client(step_policy)
    judge, judge_backend = scripted_client(critic_answers)
    critic = StepScorer(None, judge, None, ScoringConfig(mode="no-tree"))
    return policy, policy_backend, judge, judge_backend, critic


def test_beam_search_follows_the_best_scored_path(scripted_client):
    policy, policy_backend, judge, judge_backend, critic = beam_clients(scripted_client)
    options = BeamOptions(width=1, expansions=2, max_steps=4)
    result = asyncio.run(beam_search(policy, critic, RECORD, options))
    assert result.pick.answer == "B"
    best = result.finished[result.pick.candidate]
    assert best.steps == ["Ice is good at melting.", "Answer: B"]
    assert [r.reward for r in best.rewards] == [1.0, 1.0]
    # the bad first step ("Rock.") scored 0.2 and was never expanded
    expanded = [user_text(r) for r in policy_backend.requests[2:]]
    assert expanded and all("Step 1: Ice is good at melting." in t for t in expanded)
    assert result.iterations == 2 and len(result.finished) == 2  # N = 2 finished: stop
    # cost: 2 + 2 generations; the critic scores only each child's new step (1 call each)
    assert result.generations == 4 == policy.ledger.llm_calls
    assert result.scorings == 4 == judge.ledger.llm_calls == len(judge_backend.requests)


def test_beam_search_final_step_is_forced_and_unanswered_beams_cannot_win(scripted_client):
    policy, _, _, _, critic = beam_clients(scripted_client)
    # one step allowed: the policy is told to answer at once and answers A (wrong)
    result = asyncio.run(beam_search(policy, critic, RECORD, BeamOptions(1, 2, max_steps=1)))
    assert [b.steps for b in result.finished] == [["Answer: A"]]  # the duplicate kept once
    assert result.duplicates == 1 and result.pick.answer == "A"

    def rambling(request: ChatRequest) -> str:
        return f"Step 1: thinking ({request.seed})."

    wanderer, _ = scripted_client(rambling)
    result = asyncio.run(beam_search(wanderer, critic, RECORD, BeamOptions(1, 2, max_steps=2)))
    assert result.pick.answer is None and result.pick.reason.startswith("no candidate")
    assert result.finished and all(b.final and b.answer is None for b in result.finished)


def test_beam_search_with_a_whole_solution_prm_rescores_the_partial_solution(scripted_client):
    policy, _, _, _, _ = beam_clients(scripted_client)
    calls = []

    class Outcome:  # a PRM without ascore_step
        async def ascore(self, question: str, steps: list[str]) -> list[StepReward]:
            calls.append(list(steps))
            good = any("Ice" in s for s in steps) and not steps[-1].endswith("A")
            return [StepReward(len(steps) - 1, reward=0.8 if good else 0.1)]

    result = asyncio.run(beam_search(policy, Outcome(), RECORD, BeamOptions(1, 2, max_steps=3)))
    assert result.pick.answer == "B"
    assert ["Ice is good at melting.", "Answer: B"] in calls  # the whole partial solution


def test_beam_search_drops_children_whose_scoring_failed(scripted_client):
    policy, _ = scripted_client(step_policy)

    def broken(request: ChatRequest) -> str:
        return "not json" if "Rock" in user_text(request) else critic_answers(request)

    judge, _ = scripted_client(broken)
    critic = StepScorer(None, judge, None, ScoringConfig(mode="no-tree"))
    result = asyncio.run(beam_search(policy, critic, RECORD, BeamOptions(1, 2, max_steps=3)))
    assert len(result.scoring_errors) == 1 and "unparseable" in result.scoring_errors[0]
    assert result.pick.answer == "B"
    # every child's scoring fails: nothing finishes, and the pick says why
    judge, _ = scripted_client(lambda r: "not json")
    critic = StepScorer(None, judge, None, ScoringConfig(mode="no-tree"))
    result = asyncio.run(beam_search(policy, critic, RECORD, BeamOptions(1, 2, max_steps=3)))
    assert (result.iterations, result.finished, result.pick.answer) == (1, [], None)
    assert (
        result.pick.reason == "no beam finished (2 scorings failed, 0 policy errors, 0 empty steps)"
    )


def test_beam_width_and_expansions_for_n():
    assert (BeamOptions.for_n(8, expansions=4).width, BeamOptions.for_n(8, expansions=4).n) == (
        2,
        8,
    )
    assert BeamOptions.for_n(2, expansions=4).width == 1
    with pytest.raises(InputError, match="not a multiple"):
        BeamOptions.for_n(6, expansions=4)
    with pytest.raises(InputError, match="aggregation"):
        BeamOptions(agg="max")
