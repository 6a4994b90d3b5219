"""A person's edits take effect everywhere rewards are made: disabled nodes are never offered,
matched or scored (scoring, pairs, benchmarks), weights enter the weighted aggregation, and
``tree add`` keeps a person's texts and puts no new criterion into a disabled child."""

from __future__ import annotations

import asyncio
import json

import pytest

from dgprm.bench.judges import DgprmJudge
from dgprm.config import ScoringConfig, TreeConfig
from dgprm.errors import InputError
from dgprm.llm import LLMClient
from dgprm.pairs import score_prefixes
from dgprm.records import Prefix
from dgprm.scoring import StepScorer
from dgprm.tree import extend_tree
from tests.conftest import KeywordEmbedder, ScriptedBackend, judge, offered_ids, small_tree


@pytest.fixture
def embedder():
    return KeywordEmbedder(dim=64)


def scorer_for(tree, embedder, answer=judge, **config):
    backend = ScriptedBackend(answer)
    return StepScorer(tree, LLMClient(backend), embedder, ScoringConfig(**config)), backend


def test_a_disabled_child_is_never_matched_and_its_parent_is_scored_instead(embedder):
    tree = small_tree(embedder)
    scorer, _ = scorer_for(tree, embedder)
    assert [c.id for c in scorer.score("q", ["2+3 = 5"])[0].criteria] == ["c1"]
    tree.node("c1").disabled = True
    scorer, backend = scorer_for(tree, embedder)
    reward = scorer.score("q", ["2+3 = 5"])[0]
    assert [c.id for c in reward.criteria] == ["p1"]  # c1 matched the aspect before
    assert all("c1" not in offered_ids(r) for r in backend.requests)


def test_a_disabled_parent_and_its_children_are_never_offered(embedder):
    tree = small_tree(embedder)
    tree.node("p2").disabled = True
    scorer, backend = scorer_for(tree, embedder, mode="static")
    assert [c.id for c in scorer.score("q", ["5 m"])[0].criteria] == ["p1"]
    dynamic, backend = scorer_for(tree, embedder)
    dynamic.score("q", ["5 m"])
    select = [r for r in backend.requests if r.template.startswith("select")]
    assert select and all(offered_ids(r) == ["p1"] for r in select)
    tree.node("p1").disabled = True
    with pytest.raises(InputError, match="every parent"):
        scorer_for(tree, embedder)


def test_weights_enter_the_weighted_aggregation_only(embedder):
    tree = small_tree(embedder)
    tree.node("p1").weight = 3.0

    def answer(request):
        if request.template.startswith("score"):
            return json.dumps({"scores": {"p1": 8, "p2": 2}})
        return judge(request)

    weighted, _ = scorer_for(tree, embedder, answer, mode="static", agg="weighted")
    assert weighted.score("q", ["s"])[0].reward == pytest.approx((3 * 8 / 9 + 2 / 9) / 4, abs=1e-6)
    plain, _ = scorer_for(tree, embedder, answer, mode="static", agg="mean")
    assert plain.score("q", ["s"])[0].reward == pytest.approx(5 / 9, abs=1e-6)


def test_pairs_and_benchmarks_honour_disabled_nodes(embedder, tmp_path):
    tree = small_tree(embedder)
    tree.node("p2").disabled = True
    scorer, backend = scorer_for(tree, embedder, mode="static")
    prefix = Prefix(id="q1", question="q", steps=[])
    report = asyncio.run(
        score_prefixes(scorer, [prefix], tmp_path / "s.jsonl", candidates={"q1": ["a", "b"]})
    )
    row = json.loads((tmp_path / "s.jsonl").read_text())
    assert report.candidates == 2 and row["criteria"] == ["p1"]
    judgement = asyncio.run(DgprmJudge(scorer).judge("q", ["a", "b"]))
    assert judgement.valid and judgement.detail["rewards"] == [0.888889, 0.888889]
    assert all(offered_ids(r) == ["p1"] for r in backend.requests)


def test_tree_add_keeps_a_persons_text_and_fills_no_disabled_child(embedder):
    tree = small_tree(embedder)
    tree.node("c1").text = "Every sum is checked"
    tree.node("c1").edits = [{"version": 1, "op": "text"}]
    tree.node("c3").disabled = True
    tree.manifest["embedder"] = embedder.model_id

    def answers(request):
        stage = request.template.split("@")[0]
        if stage == "judge":  # the same texts as c1 and c3: they would join those children
            criteria = [
                {"title": "arithmetic", "description": "arithmetic is computed correctly"},
                {"title": "units", "description": "units are converted correctly"},
            ]
            return json.dumps({"criteria": criteria})
        if stage == "validate":
            verdicts = [{"index": i, "keep": True, "reason": "ok"} for i in range(2)]
            return json.dumps({"verdicts": verdicts})
        return json.dumps({"title": "Sound steps", "description": "Steps are correct."})

    from dgprm.records import PreferencePair

    pair = PreferencePair(id="new", question="1+1?", chosen=["1+1 = 2"], rejected=["1+1 = 3"])
    client = LLMClient(ScriptedBackend(answers))
    grown, report = asyncio.run(
        extend_tree(tree, [pair], client=client, embedder=embedder, config=TreeConfig())
    )
    assert grown.node("c1").text == "Every sum is checked"  # a person's text is kept
    assert "new/0" in grown.node("c1").members  # ... while the new criterion joins it
    assert grown.node("c3").members == ["x/2"]  # the disabled child took nothing
    assert report.new_children == 1
