"""Pareto pairs from candidate next steps: common criteria, export, sampling, resume."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys

import pytest

from dgprm.config import PairsConfig
from dgprm.llm import LLMClient, TransientLLMError
from dgprm.pairs import PairsReport, export_pairs, score_prefixes
from dgprm.records import Prefix
from dgprm.scoring import StepScorer
from tests.conftest import KeywordEmbedder, ScriptedBackend, offered_ids, small_tree, user_text

# candidate → score on each parent criterion (p1 = calculations, p2 = units)
SCORES = {
    "2+3 = 5 and 5 m": {"p1": 9, "p2": 9},
    "2+3 = 6 and 5 m": {"p1": 2, "p2": 9},
    "2+3 = 5 but 5 kg": {"p1": 9, "p2": 3},
    "2+3 = 6 but 5 kg": {"p1": 2, "p2": 3},
}


def judge(request):
    stage = request.template.split("@")[0]
    step = user_text(request).split("Step to evaluate:\n")[1].split("\n")[0]
    if stage == "select":  # the calculation step picks p1, the unit step p2
        return json.dumps({"parents": ["p2"] if "kg" in step else ["p1"]})
    if stage == "analyze":
        return json.dumps({"fine_grained": False, "aspects": []})
    if stage == "score":
        scores = {i: SCORES[step][i] for i in offered_ids(request)}
        return json.dumps({"scores": scores})
    raise AssertionError(stage)


def make_scorer(answer=judge):
    embedder = KeywordEmbedder(dim=64)
    backend = ScriptedBackend(answer)
    client = LLMClient(backend, backoff=0.0)
    return StepScorer(small_tree(embedder), client, embedder), backend


PREFIX = Prefix(id="q1", question="What is 2+3, in metres?", steps=["Add the numbers."])


def run(scorer, tmp_path, prefixes=(PREFIX,), **kwargs):
    scored = tmp_path / "pairs.scored.jsonl"
    sampling = {k: kwargs.pop(k) for k in ("n", "temperature", "seed") if k in kwargs}
    report = asyncio.run(
        score_prefixes(scorer, list(prefixes), scored, config=PairsConfig(**sampling), **kwargs)
    )
    return report, scored


def test_every_candidate_is_scored_on_the_union_of_selected_criteria(tmp_path):
    scorer, backend = make_scorer()
    report, scored = run(scorer, tmp_path, candidates={"q1": list(SCORES)})
    row = json.loads(scored.read_text())
    assert row["criteria"] == ["p1", "p2"]  # p1 from three candidates, p2 from the "kg" ones
    score_calls = [r for r in backend.requests if r.template.startswith("score@")]
    assert len(score_calls) == 4 and all(offered_ids(r) == ["p1", "p2"] for r in score_calls)
    assert row["vectors"] == [
        [1.0, 1.0],
        [0.222222, 1.0],
        [1.0, 0.333333],
        [0.222222, 0.333333],
    ]
    # only front members are chosen: the best candidate dominates all three others
    assert sorted(map(tuple, row["pairs"])) == [
        (0, 1, 0.388889),
        (0, 2, 0.333334),
        (0, 3, 0.722222),
    ]
    assert report.candidates == 4


def test_export_is_trl_format_with_metadata_and_counts_pairless_prefixes(tmp_path):
    from datasets import load_dataset

    scorer, _ = make_scorer()
    incomparable = Prefix(id="q2", question="What is 2+3?", steps=[])
    given = {"q1": list(SCORES), "q2": ["2+3 = 6 and 5 m", "2+3 = 5 but 5 kg"]}
    _, scored = run(scorer, tmp_path, prefixes=(PREFIX, incomparable), candidates=given)
    out = tmp_path / "pairs.jsonl"
    report = PairsReport()
    export_pairs(scored, out, ["q1", "q2"], report)
    # the pairs come from q1 alone; q2's candidates are mutually non-dominated
    assert (report.pairs, report.paired_prefixes, report.no_pair) == (3, 1, 1)
    rows = load_dataset("json", data_files=str(out), split="train")
    assert set(rows.column_names) >= {
        "prompt",
        "chosen",
        "rejected",
        "prefix_id",
        "margin",
        "chosen_vector",
        "rejected_vector",
        "criteria_ids",
    }
    first = rows[0]
    assert first["prompt"] == "What is 2+3, in metres?\nStep 1: Add the numbers.\nStep 2:"
    assert first["chosen"] == " 2+3 = 5 and 5 m" and first["criteria_ids"] == ["p1", "p2"]
    chat = tmp_path / "chat.jsonl"
    export_pairs(scored, chat, ["q1"], PairsReport(), conversational=True)
    message = json.loads(chat.read_text().splitlines()[0])
    assert message["prompt"][0]["role"] == "user"
    assert message["rejected"] == [{"role": "assistant", "content": "2+3 = 6 and 5 m"}]


def test_policy_samples_with_temperature_and_distinct_seeds_and_resume_skips(tmp_path):
    scorer, _ = make_scorer()
    texts = list(SCORES)
    policy_backend = ScriptedBackend(lambda r: f"Step 2: {texts[r.seed % 4]}\n\nStep 3: done")
    policy = LLMClient(policy_backend, backoff=0.0)
    report, scored = run(scorer, tmp_path, policy=policy, n=5, temperature=0.7, seed=10)
    assert sorted(r.seed for r in policy_backend.requests) == [10, 11, 12, 13, 14]
    assert {r.temperature for r in policy_backend.requests} == {0.7}
    row = json.loads(scored.read_text())
    assert sorted(row["candidates"]) == sorted(texts)  # "Step 2:" stripped, duplicate dropped
    again, _ = run(scorer, tmp_path, policy=policy, n=5, temperature=0.7, seed=10)
    assert (again.prefixes, again.skipped, len(policy_backend.requests)) == (0, 1, 5)


def test_a_prefix_whose_policy_failed_is_redone_only_with_retry_errors(tmp_path):
    scorer, _ = make_scorer()
    texts = list(SCORES)
    server = {"up": False}

    def sample(request):
        if not server["up"]:
            raise TransientLLMError("connection refused")
        return texts[request.seed % 4]

    policy_backend = ScriptedBackend(sample)
    policy = LLMClient(policy_backend, backoff=0.0, max_retries=0)
    first, scored = run(scorer, tmp_path, policy=policy, n=4, temperature=0.7)
    row = json.loads(scored.read_text())
    assert row["candidates"] == [] and len(row["errors"]) == 4  # counted, not guessed
    server["up"] = True
    kept, _ = run(scorer, tmp_path, policy=policy, n=4, temperature=0.7)
    assert (kept.prefixes, kept.skipped_with_errors) == (0, 1)
    redone, _ = run(scorer, tmp_path, policy=policy, n=4, temperature=0.7, retry_errors=True)
    assert (redone.prefixes, redone.retried, redone.candidates) == (1, 1, 4)
    rows = scored.read_text().splitlines()
    assert len(rows) == 1 and json.loads(rows[0])["errors"] == []


def test_failed_scoring_is_an_error_record_not_a_candidate(tmp_path):
    def flaky(request):
        if request.template.startswith("score@") and "kg" in user_text(request):
            return "not json"
        return judge(request)

    scorer, _ = make_scorer(flaky)
    _, scored = run(scorer, tmp_path, candidates={"q1": list(SCORES)})
    row = json.loads(scored.read_text())
    assert row["candidates"] == ["2+3 = 5 and 5 m", "2+3 = 6 and 5 m"]
    assert len(row["errors"]) == 2 and row["pairs"] == [[0, 1, 0.388889]]


def test_cli_needs_exactly_one_candidate_source(tmp_path):
    prefixes = tmp_path / "p.jsonl"
    prefixes.write_text(json.dumps(PREFIX.model_dump()) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "dgprm", "pairs", str(prefixes), "--tree", "x", "-o", "o.jsonl"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "exactly one of --policy and --candidates" in done.stderr


def test_cli_refuses_candidates_whose_ids_match_no_prefix(tmp_path):
    prefixes = tmp_path / "p.jsonl"
    prefixes.write_text(json.dumps(PREFIX.model_dump()) + "\n")
    given = tmp_path / "c.jsonl"
    given.write_text(json.dumps({"id": "other", "candidates": ["a", "b"]}) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "dgprm", "pairs", str(prefixes), "--tree", "x"]
        + ["--candidates", str(given), "-o", str(tmp_path / "o.jsonl")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "no candidate set has the id of a prefix" in done.stderr
    assert "(prefix ids: q1)" in done.stderr and not (tmp_path / "o.jsonl").exists()


def test_prefixes_missing_from_the_candidates_are_counted(tmp_path):
    scorer, _ = make_scorer()
    other = Prefix(id="q2", question="What is 2+3?", steps=[])
    report, _ = run(scorer, tmp_path, prefixes=(PREFIX, other), candidates={"q1": list(SCORES)})
    assert report.without_candidates == 1
    assert dict(report.rows())["prefixes missing from the candidates"] == "1"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"prompt": "q", "chosen": " a"}, "line 1: field 'rejected': missing"),
        ({"prompt": "q", "chosen": "", "rejected": "b"}, "field 'chosen': expected text"),
    ],
)
def test_train_refuses_bad_pairs_before_loading_a_model(tmp_path, line, message):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps(line) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "dgprm", "train", str(pairs), "--model", "nowhere", "-o", "x"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert message.replace("line 1", f"{pairs}:1") in done.stderr.replace("\n", "")


@pytest.mark.parametrize("conversational", [False, True], ids=["plain", "conversational"])
@pytest.mark.slow
def test_exported_file_goes_straight_into_trl_dpo(tmp_path, tiny_model, conversational):
    """The export file itself, metadata columns included, passes TRL's DPO data preparation
    (prompt extraction, EOS, tokenisation, chat template) and trains a step."""
    pytest.importorskip("trl")
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    scorer, _ = make_scorer()
    _, scored = run(scorer, tmp_path, candidates={"q1": list(SCORES)})
    out = tmp_path / "pairs.jsonl"
    export_pairs(scored, out, ["q1"], PairsReport(), conversational=conversational)
    dataset = load_dataset("json", data_files=str(out), split="train")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    config = DPOConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=1,
        per_device_train_batch_size=len(dataset),
        report_to="none",
        use_cpu=True,
    )
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    prepared = trainer.train_dataset
    assert len(prepared) == len(dataset) == 3  # no pair dropped by the preparation
    for row, source in zip(prepared, dataset, strict=True):
        chosen = tokenizer.decode(row["chosen_ids"])
        rejected = tokenizer.decode(row["rejected_ids"])
        if conversational:
            assert source["chosen"][0]["content"] in chosen
            assert source["rejected"][0]["content"] in rejected
            assert source["prompt"][0]["content"] in tokenizer.decode(row["prompt_ids"])
        else:  # the step follows the prompt on a token boundary, so nothing is cut
            assert tokenizer.decode(row["prompt_ids"]) == source["prompt"]
            assert chosen == source["chosen"] + tokenizer.eos_token
            assert rejected == source["rejected"] + tokenizer.eos_token
    trainer.train()
    assert trainer.state.global_step == 1
    assert all(math.isfinite(e["loss"]) for e in trainer.state.log_history if "loss" in e)
