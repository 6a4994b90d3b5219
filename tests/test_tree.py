import asyncio
import json

import numpy as np
import pytest

from dgprm.config import TreeConfig
from dgprm.errors import InputError
from dgprm.llm import ResponseCache
from dgprm.records import PreferencePair, read_records
from dgprm.tree import RewardTree, TreeError, extend_tree
from tests.conftest import KeywordEmbedder, tree_answers, write_pairs

SETTINGS = TreeConfig(xi=0.25, parent_xi=0.8)


def build(pairs, client, tree=None, embedder=None, settings=SETTINGS):
    return asyncio.run(
        extend_tree(
            tree, pairs, client=client, embedder=embedder or KeywordEmbedder(), config=settings
        )
    )


@pytest.fixture
def pairs(tmp_path):
    return read_records(write_pairs(tmp_path / "pairs.jsonl", 4), PreferencePair)


def test_build_makes_two_calls_per_pair_and_merges_identical_criteria(pairs, scripted_client):
    client, backend = scripted_client()
    tree, report = build(pairs, client)
    assert backend.stages().count("judge") == 4 and backend.stages().count("validate") == 4
    # every pair yields the same two criteria → two children, each with 4 members from 4 pairs
    assert report.raw_criteria == 8 and report.kept_criteria == 8
    assert sorted(len(c.members) for c in tree.children) == [4, 4]
    assert all(len(c.sources) == 4 for c in tree.children)
    assert {c.text for c in tree.children} == {  # cleaned: no trailing full stop
        "Correct arithmetic: Each step handles arithmetic correctly",
        "Correct equations: Each step handles equations correctly",
    }
    assert tree.manifest["usage"]["llm_calls"] == len(backend.requests)
    assert tree.vectors.shape == (len(tree.nodes) + 8, 32)


def test_rebuild_with_cache_makes_zero_llm_calls(pairs, scripted_client, tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    first, _ = scripted_client(cache=cache)
    build(pairs[:2], first)  # an "interrupted" run that finished two pairs
    resumed, backend = scripted_client(cache=ResponseCache(cache.path))
    _, report = build(pairs, resumed)
    assert backend.stages().count("judge") == 2  # only the two unfinished pairs
    again, backend2 = scripted_client(cache=ResponseCache(cache.path))
    _, report2 = build(pairs, again)
    assert backend2.requests == [] and report2.ledger.llm_calls == 0
    assert report2.ledger.cache_hits > 0


def test_save_load_round_trip(pairs, scripted_client, tmp_path):
    tree, _ = build(pairs, scripted_client()[0])
    tree.save(tmp_path / "tree")
    loaded = RewardTree.load(tmp_path / "tree")
    assert [n.to_dict() for n in loaded.nodes] == [n.to_dict() for n in tree.nodes]
    assert np.array_equal(loaded.vectors, tree.vectors)
    manifest = json.loads((tmp_path / "tree" / "manifest.json").read_text())
    assert {
        "dgprm_version",
        "llm",
        "embedder",
        "hyperparameters",
        "prompts",
        "usage",
        "files",
    } <= set(manifest)
    assert {"llm_calls", "cache_hits", "prompt_tokens", "completion_tokens", "errors"} <= set(
        manifest["usage"]
    )
    node = json.loads((tmp_path / "tree" / "tree.json").read_text())["nodes"][0]
    assert {"id", "level", "text", "parent", "children", "members", "sources", "counts"} <= set(
        node
    )


@pytest.mark.parametrize("damage", ["truncate-npy", "edit-json", "drop-file", "not-dir"])
def test_corrupted_tree_is_refused(pairs, scripted_client, tmp_path, damage):
    tree, _ = build(pairs, scripted_client()[0])
    path = tree.save(tmp_path / "tree")
    if damage == "truncate-npy":
        data = (path / "embeddings.npy").read_bytes()
        (path / "embeddings.npy").write_bytes(data[: len(data) // 2])
    elif damage == "edit-json":
        text = (path / "tree.json").read_text().replace('"c0001"', '"c9999"', 1)
        (path / "tree.json").write_text(text)
    elif damage == "drop-file":
        (path / "manifest.json").unlink()
    else:
        path = path / "tree.json"
    with pytest.raises(TreeError):
        RewardTree.load(path)


def test_inconsistent_structure_is_refused_even_with_matching_checksums(
    pairs, scripted_client, tmp_path
):
    tree, _ = build(pairs, scripted_client()[0])
    tree.children[0].parent = "p999"
    with pytest.raises(TreeError, match="parent"):
        tree.save(tmp_path / "tree")
    assert not (tmp_path / "tree").exists()


@pytest.mark.parametrize("parent_xi", [0.1, 1.9])
def test_incremental_add_keeps_ids_and_resummarises_only_changed_parents(
    scripted_client, parent_xi
):
    settings = TreeConfig(xi=0.25, parent_xi=parent_xi)

    def answers(request):
        stage = request.template.split("@")[0]
        text = request.messages[-1]["content"]
        if stage == "judge":
            topic = "units" if "metres" in text else "arithmetic"
            return json.dumps(
                {"criteria": [{"title": f"Correct {topic}", "description": f"Uses {topic} well."}]}
            )
        return tree_answers(request)

    client, backend = scripted_client(answers)
    first = [
        PreferencePair(id=f"a{i}", question=f"{i}+1?", chosen=["ok"], rejected=["bad"])
        for i in range(3)
    ]
    tree, _ = build(first, client, settings=settings)
    before = {n.id: (n.level, n.parent) for n in tree.nodes}
    more = [
        PreferencePair(id="b0", question="metres to cm?", chosen=["ok"], rejected=["no"]),
        PreferencePair(id="a0", question="0+1?", chosen=["ok"], rejected=["bad"]),
        PreferencePair(id="b1", question="2+1?", chosen=["ok"], rejected=["bad"]),
    ]
    backend.requests.clear()
    grown, report = build(more, client, tree=tree, settings=settings)
    assert report.skipped_pairs == 1  # a0 is already in the tree
    for node_id, (level, parent) in before.items():
        assert (grown.node(node_id).level, grown.node(node_id).parent) == (level, parent)
    arithmetic = next(c for c in grown.children if "arithmetic" in c.text)
    assert arithmetic.id in before and "b1" in arithmetic.sources
    assert report.new_children == 1
    summaries = [
        r.messages[-1]["content"] for r in backend.requests if r.template.startswith("summarize")
    ]
    if parent_xi < 0.5:  # the new child founds its own parent: nothing to re-summarise
        assert summaries == [] and len(grown.parents) == 2
    else:  # it joins the old parent, which alone is re-summarised with both children
        assert len(summaries) == 1 and "units" in summaries[0] and "arithmetic" in summaries[0]
        assert len(grown.parents) == 1


def test_embedder_mismatch_is_refused(pairs, scripted_client):
    tree, _ = build(pairs, scripted_client()[0])
    with pytest.raises(InputError, match="embedder"):
        build(pairs, scripted_client()[0], tree=tree, embedder=KeywordEmbedder(model_id="other"))


def test_judge_failure_is_recorded_and_the_run_continues(pairs, scripted_client):
    def answers(request):
        if "What is 1+1" in request.messages[-1]["content"] and "judge" in request.template:
            return "not json at all"
        return tree_answers(request)

    client, _ = scripted_client(answers)
    tree, report = build(pairs, client)
    assert report.ledger.errors == 1 and report.kept_criteria == 6
    assert tree.errors[0]["stage"] == "judge" and tree.errors[0]["pair_id"] == "p1"


def test_validator_rejections_are_kept_for_provenance_but_not_clustered(pairs, scripted_client):
    def answers(request):
        if request.template.startswith("validate"):
            return json.dumps(
                {
                    "verdicts": [
                        {"index": 0, "keep": False, "reason": "vague"},
                        {"index": 1, "keep": True, "reason": "fine"},
                    ]
                }
            )
        return tree_answers(request)

    tree, report = build(pairs, scripted_client(answers)[0])
    assert report.kept_criteria == 4 and len(tree.criteria) == 8
    assert {c.reason for c in tree.criteria if not c.kept} == {"vague"}
    assert len(tree.children) == 1


def test_the_quality_gate_runs_before_the_validator_and_its_reasons_are_kept(pairs, tmp_path):
    import json as _json

    from tests.conftest import ScriptedBackend

    def answers(request):
        if request.template.startswith("judge"):
            criteria = [
                {"title": "Better", "description": "The better solution is better than the worse"},
                {"title": "1.1.1.1.1", "description": "1.1.1.1.1.1.1.1"},
                {"title": "Units", "description": "Units are consistent"},
            ]
            return _json.dumps({"criteria": criteria})
        return tree_answers(request)

    backend = ScriptedBackend(answers)
    from dgprm.llm import LLMClient

    tree, report = build(pairs[:1], LLMClient(backend))
    gates = [c.gate["reason"] if c.gate else None for c in tree.criteria]
    assert gates == ["comparison", "repetition", None]
    validate = [r for r in backend.requests if r.template.startswith("validate")]
    assert (
        len(validate) == 1
        and "[0] Units: Units are consistent" in validate[0].messages[-1]["content"]
        and "[1]" not in validate[0].messages[-1]["content"]
    )  # only what passed the gate
    assert report.gate_rejected == {"comparison": 1, "repetition": 1}
    assert dict(report.rows())["rejected by the quality gate"].startswith("2 (")
    assert [c.kept for c in tree.criteria] == [False, False, True]
    saved = RewardTree.load(tree.save(tmp_path / "t"))
    assert saved.criteria[0].gate == tree.criteria[0].gate  # kept beside the verdicts
