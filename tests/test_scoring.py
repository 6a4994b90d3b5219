import asyncio
import json

import numpy as np
import pytest

from dgprm.config import ScoringConfig
from dgprm.errors import InputError
from dgprm.llm import TransientLLMError
from dgprm.records import Trajectory
from dgprm.scoring import CRITIC_ID, ChildIndex, StepScorer, aggregate, context_window, score_many
from tests.conftest import KeywordEmbedder, judge, offered_ids, small_tree, user_text


def unit(*xs):
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


# ---- pure pieces ------------------------------------------------------------------------


def test_zeta_matching_selects_inside_and_rejects_outside():
    index = ChildIndex(
        {"p1": ["a", "b"], "p2": ["c"]},
        {"a": unit(1, 0, 0), "b": unit(0, 1, 0), "c": unit(1, 0.01, 0)},
    )
    angle_in, angle_out = np.arccos(1 - 0.19), np.arccos(1 - 0.21)
    inside = np.array([[np.cos(angle_in), np.sin(angle_in), 0]], dtype=np.float32)
    outside = np.array([[np.cos(angle_out), np.sin(angle_out), 0]], dtype=np.float32)
    assert index.match(inside, ["p1"], zeta=0.2) == ["a"]
    assert index.match(outside, ["p1"], zeta=0.2) == []
    assert index.match(inside, ["p1", "p2"], zeta=0.2) == ["a", "c"]  # only chosen parents
    assert index.match(inside, ["p2"], zeta=0.2) == ["c"]


@pytest.mark.parametrize(
    ("t", "mu", "expected"),
    [(0, 20, []), (3, 20, ["s0", "s1", "s2"]), (3, 2, ["s1", "s2"]), (3, 0, []), (1, 1, ["s0"])],
)
def test_context_window_boundaries(t, mu, expected):
    assert context_window([f"s{i}" for i in range(5)], t, mu) == expected


def test_aggregate():
    assert aggregate([0.2, 0.8], "mean") == 0.5 and aggregate([0.2, 0.8], "min") == 0.2


@pytest.fixture
def embedder():
    return KeywordEmbedder(dim=64)


def make_scorer(scripted_client, embedder, answer=judge, mode="dynamic", **settings):
    client, backend = scripted_client(answer)
    merge = settings.pop("merge", False)
    scorer = StepScorer(
        small_tree(embedder) if mode != "no-tree" else None,
        client,
        embedder,
        ScoringConfig(mode=mode, merge_r_phi=merge, **settings),
    )
    return scorer, backend


def test_dynamic_scoring_selects_matched_children_and_aligns_vector(scripted_client, embedder):
    def score(i, step):
        return 2 if "wrong" in step else 9

    scorer, backend = make_scorer(scripted_client, embedder, lambda r: judge(r, score=score))
    rewards = scorer.score("What is 2+3?", ["2+3 = 5", "this is wrong"])
    assert [c.id for c in rewards[0].criteria] == ["c1"]  # only the ζ-matched child
    assert rewards[0].criteria[0].parent_id == "p1"
    assert rewards[0].vector == [1.0] and rewards[0].reward == 1.0 and rewards[0].label is True
    assert rewards[1].vector == [0.222222] and rewards[1].label is False
    assert backend.stages().count("select") == 2 and backend.stages().count("score") == 2
    assert len(backend.requests) == 6  # three calls per step


def test_no_matching_child_scores_on_the_chosen_parents(scripted_client, embedder):
    scorer, _ = make_scorer(
        scripted_client, embedder, lambda r: judge(r, aspects=("zebra giraffe",))
    )
    rewards = scorer.score("q", ["a step"])
    assert [c.id for c in rewards[0].criteria] == ["p1"]
    assert rewards[0].criteria[0].parent_id is None


def test_ablations_change_the_calls_made(scripted_client, embedder):
    merged, b1 = make_scorer(scripted_client, embedder, merge=True)
    merged.score("q", ["2+3 = 5"])
    assert b1.stages() == ["select_analyze", "score"]
    static, b2 = make_scorer(scripted_client, embedder, mode="static")
    rewards = static.score("q", ["2+3 = 5"])
    assert b2.stages() == ["score"] and [c.id for c in rewards[0].criteria] == ["p1", "p2"]
    plain, b3 = make_scorer(scripted_client, embedder, mode="no-tree")
    rewards = plain.score("q", ["2+3 = 5"])
    assert b3.stages() == ["score"] and rewards[0].criteria[0].id == CRITIC_ID
    no_context, b4 = make_scorer(scripted_client, embedder, mode="static", mu=0)
    no_context.score("q", ["first step", "second step"])
    assert all("Previous steps:\n(none)" in r.messages[-1]["content"] for r in b4.requests)
    with_context, b5 = make_scorer(scripted_client, embedder, mode="static", mu=20)
    with_context.score("q", ["first step", "second step"])
    assert any("Step 1: first step" in r.messages[-1]["content"] for r in b5.requests)


@pytest.mark.parametrize("bad", ["unknown", "missing", "out of range"])
def test_answers_naming_wrong_criteria_are_errors_not_default_scores(
    scripted_client, embedder, bad
):
    def answer(request):
        if request.template.startswith("score"):
            ids = offered_ids(request)
            scores = {i: 5 for i in ids}
            if bad == "unknown":
                scores["zz"] = 5
            elif bad == "missing":
                scores.pop(ids[-1])
            else:
                scores[ids[0]] = 11
            return json.dumps({"scores": scores})
        return judge(request)

    scorer, _ = make_scorer(scripted_client, embedder, answer, mode="static")
    reward = scorer.score("q", ["s"])[0]
    assert reward.error and reward.error.startswith("score:")
    assert reward.vector == [] and reward.reward is None and reward.label is None
    assert scorer.client.ledger.errors == 1


def test_selecting_a_criterion_not_offered_is_an_error(scripted_client, embedder):
    def answer(request):
        if request.template.startswith("select"):
            return json.dumps({"parents": ["p9"]})
        return judge(request)

    reward = make_scorer(scripted_client, embedder, answer)[0].score("q", ["s"])[0]
    assert reward.error and "not offered" in reward.error


def test_bad_inputs_are_refused(scripted_client, embedder):
    scorer, _ = make_scorer(scripted_client, embedder)
    for question, steps in [("q", []), ("q", ["ok", " "]), ("  ", ["s"])]:
        with pytest.raises(InputError):
            scorer.score(question, steps)
    client, _ = scripted_client(judge)
    with pytest.raises(InputError, match="embedder"):
        StepScorer(small_tree(embedder), client, KeywordEmbedder(model_id="other"), ScoringConfig())


def test_resume_keeps_records_with_errors_unless_asked_to_retry_them(
    scripted_client, embedder, tmp_path
):
    server = {"up": False}  # down for t1's steps on the first run

    def answer(request):
        if "step 1" in user_text(request) and not server["up"]:
            raise TransientLLMError("connection refused")
        return judge(request)

    scorer, backend = make_scorer(scripted_client, embedder, answer=answer, mode="static")
    items = [Trajectory(id=f"t{i}", question="q", steps=[f"step {i}"]) for i in range(2)]
    out = tmp_path / "rewards.jsonl"
    asyncio.run(score_many(scorer, items, out))
    rows = {json.loads(line)["id"]: json.loads(line) for line in out.read_text().splitlines()}
    assert rows["t0"]["errors"] == [] and rows["t1"]["errors"]  # an error record, no score
    server["up"] = True
    kept = asyncio.run(score_many(scorer, items, out))
    assert (kept.trajectories, kept.skipped, kept.skipped_with_errors) == (0, 2, 1)
    assert "1 of them with errors (--retry-errors redoes them)" in dict(kept.rows())["trajectories"]
    backend.requests.clear()
    retried = asyncio.run(score_many(scorer, items, out, retry_errors=True))
    assert (retried.trajectories, retried.skipped, retried.retried) == (1, 1, 1)
    assert all("step 1" in user_text(r) for r in backend.requests)  # only t1 is redone
    rows = {json.loads(line)["id"]: json.loads(line) for line in out.read_text().splitlines()}
    assert sorted(rows) == ["t0", "t1"] and rows["t1"]["errors"] == []
    assert rows["t1"]["steps"][0]["vector"] == [0.888889, 0.888889]


def test_score_many_writes_records_and_resume_skips_finished_ids(
    scripted_client, embedder, tmp_path
):
    scorer, backend = make_scorer(scripted_client, embedder, mode="static")
    items = [Trajectory(id=f"t{i}", question="q", steps=[f"step {i}", "next"]) for i in range(3)]
    out = tmp_path / "rewards.jsonl"
    report = asyncio.run(score_many(scorer, items[:2], out))
    assert report.trajectories == 2 and report.steps == 4
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["id"] == "t0" and rows[0]["usage"]["llm_calls"] == 2
    step = rows[0]["steps"][0]
    assert set(step) == {"index", "criteria", "vector", "reward", "label"}
    assert [c["id"] for c in step["criteria"]] == ["p1", "p2"] and len(step["vector"]) == 2
    backend.requests.clear()
    report = asyncio.run(score_many(scorer, items, out))
    assert report.skipped == 2 and report.trajectories == 1
    assert {r.messages[-1]["content"].count("step 2") > 0 for r in backend.requests} == {True}
    assert len(out.read_text().splitlines()) == 3


def _with_logprobs(text, top):
    """A completion whose token stream is ``text`` cut before the one digit of ``top``."""
    from dgprm.llm import Completion

    head, tail = text.split("§")
    entries = [
        {"token": head, "logprob": 0.0, "top_logprobs": []},
        {
            "token": top[0][0],
            "logprob": top[0][1],
            "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top],
        },
        {"token": tail, "logprob": 0.0, "top_logprobs": []},
    ]
    return Completion(head + top[0][0] + tail, 10, 5, "stop", entries)


def test_expected_scores_are_read_from_the_log_probabilities(scripted_client, embedder):
    import math

    top = [("7", math.log(0.5)), (",", math.log(0.2)), ("9", math.log(0.3))]

    def answer(request):
        if request.template.startswith("score"):
            assert request.top_logprobs > 0  # asked for the distribution
            return _with_logprobs('{"scores": {"p1": §, "p2": 3}}', top)
        return judge(request)

    scorer, _ = make_scorer(scripted_client, embedder, answer, mode="static")
    reward = scorer.score("q", ["s"])[0]
    first, second = reward.criteria
    # renormalised over the digits: (0.5 * 7 + 0.3 * 9) / 0.8 = 7.75 of 9
    assert first.mode == "expected" and first.sampled == 7
    assert first.score == pytest.approx(7.75 / 9, abs=1e-6)
    assert second.mode.startswith("sample (") and second.score == pytest.approx(3 / 9, abs=1e-6)


def test_without_log_probabilities_scores_fall_back_to_the_sample_with_one_warning(
    scripted_client, embedder
):
    scorer, _ = make_scorer(scripted_client, embedder, judge, mode="static")
    with pytest.warns(UserWarning, match="no token log-probabilities") as caught:
        first = scorer.score("q", ["s"])[0]
        scorer.score("q", ["t"])
    assert len(caught) == 1  # once, not per call
    assert {c.mode for c in first.criteria} == {"sample (no log-probs)"}
    sample, backend = make_scorer(
        scripted_client, embedder, judge, mode="static", score_mode="sample"
    )
    sample.score("q", ["s"])
    assert all(r.top_logprobs == 0 for r in backend.requests)
