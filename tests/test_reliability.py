"""One test per class of misbehaviour found by trying dgprm as a demanding user would
(issue 19): outputs that destroyed or hid data, inputs that crashed or were wrongly
accepted, late validation, empty benchmark steps, silent defaults, invisible retries, file
modes, real-server errors and training precision."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys

import httpx
import numpy as np
import pytest

from dgprm.bench import prmbench
from dgprm.bench.metrics import Item, Prediction, prmbench_results
from dgprm.config import RuntimeConfig, ScoringConfig
from dgprm.data import EMPTY_STEP, prmbench_pairs
from dgprm.embed import EmbedderError, OpenAIEmbedder
from dgprm.errors import InputError
from dgprm.files import write_jsonl
from dgprm.llm import LLMClient, TransientLLMError, make_backend
from dgprm.pairs import make_pairs
from dgprm.records import Trajectory, read_records
from dgprm.scoring import StepScorer, score_file, score_many
from dgprm.train import cpu_has_native_bf16, resolve_precision
from dgprm.tree import build_tree
from dgprm.tree.model import RewardTree, TreeError
from tests.conftest import (
    SAMPLES,
    KeywordEmbedder,
    ScriptedBackend,
    judge,
    small_tree,
    tree_answers,
    write_pairs,
)


def dgprm(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "dgprm", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def trajectories(path, count=2):
    rows = [{"id": f"t{i}", "question": "q", "steps": [f"step {i}"]} for i in range(count)]
    write_jsonl(path, rows)
    return path


@pytest.fixture
def saved_tree(tmp_path):
    embedder = KeywordEmbedder(dim=64)
    tree = small_tree(embedder)
    tree.manifest["embedder_spec"] = "keyword"
    return tree.save(tmp_path / "tree"), embedder


# ---- outputs that destroyed or hid data ------------------------------------------------


def test_tree_build_refuses_its_input_as_output_and_a_directory_that_is_not_a_tree(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    before = pairs.read_bytes()
    client = LLMClient(ScriptedBackend(tree_answers))
    with pytest.raises(InputError, match="also an input"):
        build_tree(pairs, out=pairs, llm=client, embedder=KeywordEmbedder())
    assert pairs.read_bytes() == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a reward tree"):
        build_tree(pairs, out=mine, llm=client, embedder=KeywordEmbedder())
    assert (mine / "notes.txt").read_text() == "keep me" and client.ledger.llm_calls == 0
    with pytest.raises(InputError, match="holding"):  # -o . would replace the input's folder
        build_tree(pairs, out=tmp_path, llm=client, embedder=KeywordEmbedder())
    tree, _ = build_tree(pairs, out=tmp_path / "t", llm=client, embedder=KeywordEmbedder())
    build_tree(pairs, out=tmp_path / "t", llm=client, embedder=KeywordEmbedder())  # a tree: ok


def test_score_refuses_an_unrelated_file_a_directory_and_its_input(tmp_path, saved_tree):
    tree, embedder = saved_tree
    traj = trajectories(tmp_path / "traj.jsonl")
    client = LLMClient(ScriptedBackend(judge))
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    for out, message in [
        (notes, "not step rewards"),
        (traj, "also an input"),
        (tree, "also an input"),
        (tmp_path, "holding"),
    ]:
        with pytest.raises(InputError, match=message):
            score_file(traj, out, tree=tree, llm=client)
    assert notes.read_text() == "my notes\n" and client.ledger.llm_calls == 0
    (tmp_path / "dir").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        score_file(traj, tmp_path / "dir", tree=tree, llm=client)


def test_pairs_and_prmbench_pairs_refuse_to_overwrite_their_input(tmp_path, saved_tree):
    tree, _ = saved_tree
    prefixes = tmp_path / "prefixes.jsonl"
    write_jsonl(prefixes, [{"id": "q1", "question": "q", "steps": []}])
    candidates = tmp_path / "c.jsonl"
    write_jsonl(candidates, [{"id": "q1", "candidates": ["a", "b"]}])
    before = candidates.read_bytes()
    with pytest.raises(InputError, match="also an input"):
        make_pairs(prefixes, candidates, tree=tree, candidates=candidates, llm="embedded")
    assert candidates.read_bytes() == before
    source = tmp_path / "records.jsonl"
    source.write_bytes((SAMPLES / "prmbench_records.jsonl").read_bytes())
    done = dgprm("data", "prmbench-pairs", source, "-o", source)
    assert done.returncode == 2 and "also an input" in done.stderr
    assert source.read_bytes() == (SAMPLES / "prmbench_records.jsonl").read_bytes()


def test_bench_refuses_its_predictions_as_run_directory(tmp_path):
    predictions = tmp_path / "preds.jsonl"
    write_jsonl(predictions, [{"idx": "deception_0", "scores": {}}])
    with pytest.raises(InputError, match="not a directory|also an input"):
        prmbench.evaluate_predictions(predictions, predictions)
    assert predictions.exists() and not (tmp_path / "run.json").exists()


# ---- input that crashed ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"id": "a", "question": "q", "steps": ["\\ud800"]}', "not valid Unicode"),
        (
            '{"id": "a", "question": "q", "steps": ["s"], "x": ' + "[" * 200 + "]" * 200 + "}",
            "nested deeper",
        ),
        ('{"id": "a", "question": "q", "steps": ["s"], "n": ' + "9" * 5000 + "}", "digits"),
    ],
)
def test_unusual_json_is_a_one_line_error_not_a_traceback(tmp_path, text, message):
    path = tmp_path / "t.jsonl"
    path.write_text(text + "\n")
    with pytest.raises(InputError, match=message):
        read_records(path, Trajectory)
    done = dgprm("score", path, "--no-tree", "-o", tmp_path / "o.jsonl")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.jsonl").exists()


def _rewrite(tree_dir, name, content: bytes) -> None:
    """Replace one artifact file and its checksum, as a consistent but wrong tree would."""
    from dgprm.files import file_sha256

    (tree_dir / name).write_bytes(content)
    if name == "manifest.json":
        return
    manifest = json.loads((tree_dir / "manifest.json").read_text())
    manifest["files"][name] = file_sha256(tree_dir / name)
    (tree_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("tree.json", lambda d: {**d, "nodes": {"p1": {}}}, "field 'nodes'"),
        (
            "tree.json",
            lambda d: {**d, "criteria": [{**d["criteria"][0], "kept": "yes"}, *d["criteria"][1:]]},
            "field 'criteria.0.kept'",
        ),
        ("manifest.json", lambda d: [d], "not a tree manifest"),
    ],
)
def test_a_tree_with_wrong_types_is_refused_naming_the_field(saved_tree, name, change, message):
    tree, _ = saved_tree
    data = json.loads((tree / name).read_text())
    _rewrite(tree, name, json.dumps(change(data)).encode())
    with pytest.raises(TreeError, match=message):
        RewardTree.load(tree)


def test_an_empty_embeddings_file_is_refused_not_an_interrupt(saved_tree):
    tree, _ = saved_tree
    _rewrite(tree, "embeddings.npy", b"")
    with pytest.raises(TreeError, match="embeddings.npy: unreadable"):
        RewardTree.load(tree)
    done = dgprm("tree", "show", tree)
    assert done.returncode == 2 and "interrupted" not in done.stderr


# ---- input that was accepted but wrong -------------------------------------------------


def test_a_negative_limit_is_a_usage_error(tmp_path):
    traj = trajectories(tmp_path / "t.jsonl")
    done = dgprm("score", traj, "--no-tree", "--limit", "-1", "-o", tmp_path / "o.jsonl")
    assert done.returncode == 2 and "--limit" in done.stderr


@pytest.mark.parametrize("original", [None, [], ["ok", None]])
def test_prmbench_pairs_never_writes_a_null_chosen(tmp_path, original):
    record = json.loads((SAMPLES / "prmbench_records.jsonl").read_text().splitlines()[0])
    source = tmp_path / "r.jsonl"
    write_jsonl(source, [{**record, "original_process": original}])
    pairs = prmbench_pairs(source)
    assert pairs == [] and sum(pairs.skipped.values()) == 1


def test_predictions_that_cannot_be_scored_are_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="no predictions|no records"):
        prmbench.evaluate_predictions(empty, tmp_path / "run")
    foreign = tmp_path / "foreign.jsonl"
    write_jsonl(foreign, [{"idx": "nowhere_1", "scores": {"step_level_validity_labels": [True]}}])
    with pytest.raises(InputError, match="1 of 1 prediction ids are not in the data"):
        prmbench.evaluate_predictions(foreign, tmp_path / "run")
    assert not (tmp_path / "run" / "run.json").exists()  # checked before the run starts


def test_a_prediction_with_the_wrong_number_of_labels_is_invalid():
    items = {"deception_1": Item("deception_1", "deception", (2,), 7)}
    results = prmbench_results(items, [Prediction("deception_1", True, [True] * 40)])
    assert results["valid"] == 0 and results["wrong_length"] == 1


def test_a_trajectory_without_steps_is_refused_by_the_reader(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "a", "question": "q"}\n')
    with pytest.raises(InputError, match="t.jsonl:1: field 'steps': Field required"):
        read_records(path, Trajectory)


# ---- empty steps inside benchmark data -------------------------------------------------


def test_empty_benchmark_steps_are_scored_as_marked_steps_and_counted(tmp_path, saved_tree):
    record = json.loads((SAMPLES / "prmbench_records.jsonl").read_text().splitlines()[0])
    steps = list(record["modified_process"])
    steps[0] = "  "
    data = tmp_path / "data.jsonl"
    write_jsonl(data, [{**record, "modified_process": steps}])
    tree, _ = saved_tree
    backend = ScriptedBackend(judge)
    result = prmbench.run(
        tmp_path / "run",
        data=data,
        trees=[tree],
        scoring=ScoringConfig(mode="static"),
        runtime=RuntimeConfig(embedder="keyword"),
        client=LLMClient(backend),
        embedder=KeywordEmbedder(dim=64),
    )
    assert result.empty_steps == 1 and result.results["valid"] == 1
    shown = [r.messages[-1]["content"] for r in backend.requests]
    assert any(f"Step to evaluate:\n{EMPTY_STEP}" in text for text in shown)
    pairs = prmbench_pairs(data)
    assert pairs and all(s.strip() for p in pairs for s in p["chosen"] + p["rejected"])


# ---- silent defaults and invisible work ------------------------------------------------


def test_an_empty_analysis_answer_is_an_error_record_not_defaults():
    embedder = KeywordEmbedder(dim=64)

    def answer(request):
        return "{}" if request.template.startswith("analyze") else judge(request)

    scorer = StepScorer(small_tree(embedder), LLMClient(ScriptedBackend(answer)), embedder)
    reward = scorer.score("q", ["2+3 = 5"])[0]
    assert reward.error and reward.error.startswith("analyze: unparseable answer")
    assert reward.reward is None and scorer.client.ledger.errors == 1


def test_retries_appear_in_each_trajectorys_usage(tmp_path):
    embedder = KeywordEmbedder(dim=64)
    failures = {"left": 2}

    def answer(request):
        if failures["left"]:
            failures["left"] -= 1
            raise TransientLLMError("busy")
        return judge(request)

    client = LLMClient(ScriptedBackend(answer), backoff=0.0)
    scorer = StepScorer(small_tree(embedder), client, embedder, ScoringConfig(mode="static"))
    items = [Trajectory(id="t0", question="q", steps=["s"])]
    report = asyncio.run(score_many(scorer, items, tmp_path / "o.jsonl"))
    row = json.loads((tmp_path / "o.jsonl").read_text())
    assert row["usage"]["retries"] == 2 and report.ledger.retries == 2
    assert row["usage"]["llm_seconds"] >= 0 and row["errors"] == []


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        from dgprm import files

        files._umask.cache_clear()
        out = tmp_path / "rows.jsonl"
        write_jsonl(out, [{"id": "a"}])
        tree = small_tree(KeywordEmbedder(dim=64)).save(tmp_path / "tree")
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        assert stat.S_IMODE(tree.stat().st_mode) == 0o755
        assert stat.S_IMODE((tree / "tree.json").stat().st_mode) == 0o644
    finally:
        os.umask(old)
        files._umask.cache_clear()


# ---- real servers ----------------------------------------------------------------------


def test_an_embedding_server_that_cannot_embed_is_a_one_line_error():
    transport = httpx.MockTransport(
        lambda r: httpx.Response(501, text="This server does not support embeddings")
    )
    embedder = OpenAIEmbedder("http://127.0.0.1:1/v1", "m", transport=transport)
    with pytest.raises(EmbedderError, match="HTTP 501.*does not support embeddings") as info:
        embedder.encode(["a"])
    assert "\n" not in str(info.value) and isinstance(info.value, InputError)


def test_an_embedder_is_identified_by_model_and_dimension_not_address():
    def server(request):
        texts = json.loads(request.content)["input"]
        data = [{"index": i, "embedding": [1.0, 0.0, float(i)]} for i in range(len(texts))]
        return httpx.Response(200, json={"data": data})

    ids = {
        OpenAIEmbedder(url, "m", transport=httpx.MockTransport(server)).model_id
        for url in ("http://127.0.0.1:41903/v1", "http://127.0.0.1:50000/v1")
    }
    assert ids == {"openai:m/3d"}


def test_the_request_timeout_is_a_setting():
    backend = make_backend("openai:http://127.0.0.1:1/v1#m", timeout=7.5)
    assert backend._http.timeout.read == 7.5
    assert RuntimeConfig(timeout=3).timeout == 3.0
    with pytest.raises(ValueError):
        RuntimeConfig(timeout=0)


# ---- training precision ----------------------------------------------------------------


def test_training_precision_follows_the_device():
    assert cpu_has_native_bf16("flags : fpu sse avx2") is False
    assert cpu_has_native_bf16("flags : avx512f avx512_bf16") is True
    import torch

    if not torch.cuda.is_available():
        expected = "bf16" if cpu_has_native_bf16() else "fp32"
        assert resolve_precision("auto") == expected
        with pytest.raises(InputError, match="fp16 needs a CUDA GPU"):
            resolve_precision("fp16")
    assert resolve_precision("fp32") == "fp32"


def test_the_tree_embedding_rows_of_a_build_are_finite(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    tree, _ = build_tree(
        pairs, llm=LLMClient(ScriptedBackend(tree_answers)), embedder=KeywordEmbedder()
    )
    assert np.isfinite(tree.vectors).all()
