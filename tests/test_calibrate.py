"""Threshold calibration: the cut that maximises the objective on constructed rewards, and a
PRMBench run calibrated on the other fold (never on the evaluated items)."""

from __future__ import annotations

import json

import pytest

from dgprm.bench import prmbench
from dgprm.bench.calibrate import best_cut, cuts, step_accuracy
from dgprm.config import RuntimeConfig, ScoringConfig
from dgprm.errors import InputError
from dgprm.llm import LLMClient
from tests.conftest import KeywordEmbedder, ScriptedBackend, offered_ids, small_tree


def test_the_best_cut_separates_constructed_rewards():
    # correct steps score 0.6-0.9, wrong ones 0.3-0.5: every cut in (0.5, 0.6) is perfect
    scored = [([0.9, 0.6, 0.3], [True, True, False]), ([0.5, 0.7], [False, True])]
    cut, value = best_cut(scored, step_accuracy)
    assert value == 1.0 and 0.5 < cut < 0.6
    assert step_accuracy(scored, 0.5) == 1.0 and step_accuracy(scored, 0.0) < 1.0
    assert cuts([0.5]) == [0.49]
    with pytest.raises(InputError, match="no step rewards"):
        best_cut([], step_accuracy)


def _judge(request):
    """Scores every criterion 7 on the first step of a solution and 3 on the others."""
    stage = request.template.split("@")[0]
    text = request.messages[-1]["content"]
    if stage == "score":
        first = "Previous steps:\n(none)" in text
        return json.dumps({"scores": {i: 7 if first else 3 for i in offered_ids(request)}})
    raise AssertionError(stage)


def test_a_prmbench_run_takes_its_threshold_from_the_other_folds_run(tmp_path):
    embedder = KeywordEmbedder(dim=64)
    tree = small_tree(embedder)
    tree.manifest["embedder_spec"] = "keyword"
    tree_dir = tree.save(tmp_path / "tree")
    common = {
        "method": "dgprm",
        "trees": [tree_dir],
        "scoring": ScoringConfig(mode="static", score_mode="sample"),
        "runtime": RuntimeConfig(embedder="keyword"),
        "client": LLMClient(ScriptedBackend(_judge)),
        "embedder": embedder,
    }
    calibration_run = prmbench.run(tmp_path / "fold0", fold=0, **common)
    assert calibration_run.results["valid"] > 0
    evaluated = prmbench.run(tmp_path / "fold1", fold=1, calibrate_on=tmp_path / "fold0", **common)
    chosen = evaluated.results["calibration"]
    assert chosen["calibrated_on"] == str(tmp_path / "fold0") and chosen["items"] > 0
    assert 3 / 9 - 1e-6 <= chosen["threshold"] < 7 / 9  # a cut between the two scores
    run = json.loads((tmp_path / "fold1" / "run.json").read_text())
    assert run["config"]["calibration"]["threshold"] == chosen["threshold"]
    assert run["config"]["hyperparameters"]["threshold"] == chosen["threshold"]
    with pytest.raises(InputError, match="of the items this run evaluates"):
        prmbench.run(tmp_path / "again", fold=0, calibrate_on=tmp_path / "fold0", **common)
