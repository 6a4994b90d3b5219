"""PRMBench / ProcessBench metrics on hand-computed cases, and the benchmark runner."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import numpy as np
import pytest

from dgprm.bench.judges import CriticJudge, Judgement
from dgprm.bench.metrics import (
    Counts,
    Item,
    Prediction,
    f1,
    item_counts,
    negative_f1,
    prm_score,
    prmbench_results,
    processbench_results,
)
from dgprm.bench.prmbench import (
    assign_trees,
    metric_items,
    prediction_record,
    prmbench_records,
    read_predictions,
    resolve_source,
    select_records,
)
from dgprm.bench.processbench import results_by_subset
from dgprm.bench.rundir import Task, judge_all, start_run
from dgprm.data import question_fold
from dgprm.errors import InputError
from dgprm.llm import LLMClient, TransientLLMError
from dgprm.tree.model import Node, RewardTree
from tests.conftest import SAMPLES, SHARED, ScriptedBackend, user_text

# ------------------------------------------------------------------ PRMBench metric ------


def test_counts_follow_the_definition_and_ignore_out_of_range_errors():
    # steps 0..3; error steps (1-based) 2 and 7 → E = {1} (6 is outside the labels)
    c = item_counts([True, True, False, False], [2, 7])
    assert c == Counts(tp=1, fn=2, fp=1, tn=0)


def test_f1_by_hand():
    c = Counts(tp=6, fn=2, fp=3, tn=1)
    p, r = 6 / 9, 6 / 8
    assert f1(c) == pytest.approx(2 * p * r / (p + r))
    pn, rn = 1 / 3, 1 / 4
    assert negative_f1(c) == pytest.approx(2 * pn * rn / (pn + rn))
    assert prm_score(c) == pytest.approx(100 * (0.5 * f1(c) + 0.5 * negative_f1(c)))


def test_undefined_precision_takes_minus_one():
    # every step judged correct: TN = FN = 0, so P' = 0/0 → −1, R' = 0/FP = 0 → negF1 = 0
    c = Counts(tp=5, fn=0, fp=2, tn=0)
    assert negative_f1(c) == 0.0
    assert prm_score(c) == pytest.approx(50 * f1(c))
    # P = −1 (no predicted positives), R = 0 (positives exist) → 2·(−1)·0/(−1) = 0
    assert f1(Counts(tp=0, fn=3, fp=0, tn=2)) == 0.0
    # P + R = 0 exactly → −1
    assert f1(Counts(tp=0, fn=1, fp=1, tn=0)) == -1.0
    # score is clipped at 0
    assert prm_score(Counts(tp=0, fn=1, fp=1, tn=0)) == 0.0


def test_multi_solutions_reports_positive_f1_only():
    c = Counts(tp=3, fn=1, fp=0, tn=0)
    assert prm_score(c, "multi_solutions") == pytest.approx(100 * f1(c))
    assert prm_score(c, "circular") != prm_score(c, "multi_solutions")


def test_redundancy_labels_override_validity_only_for_redundancy_classes():
    validity, redundancy = [True, True, True], [False, True, False]
    for name in ("redundency", "circular"):
        assert item_counts(validity, [2], redundancy, name) == Counts(tp=2, fn=0, fp=0, tn=1)
    assert item_counts(validity, [2], redundancy, "deception") == Counts(tp=2, fn=0, fp=1, tn=0)


def test_overall_is_pooled_not_a_mean_of_columns():
    items = {
        "circular_a": Item("circular_a", "circular", (1,), 2),
        "deception_a": Item("deception_a", "deception", (2,), 4),
        "deception_b": Item("deception_b", "deception", (4,), 4),
    }
    predictions = [
        Prediction("circular_a", True, [False, True]),  # perfect
        Prediction("deception_a", True, [True, True, True, True]),
        Prediction("deception_b", True, [True, False, True, False]),
    ]
    r = prmbench_results(items, predictions)
    assert r["circular"] == 100.0
    deception = Counts(tp=5, fn=1, fp=1, tn=1)
    assert r["deception"] == pytest.approx(prm_score(deception))
    pooled = Counts(tp=6, fn=1, fp=1, tn=2)
    assert r["overall"] == pytest.approx(prm_score(pooled))
    assert r["overall"] != pytest.approx((r["circular"] + r["deception"]) / 2)
    assert r["details"]["overall"]["tp"] == 6


def test_invalid_predictions_are_dropped_and_correct_items_enter_no_number():
    items = {
        "circular_a": Item("circular_a", "circular", (1,), 2),
        "circular_b": Item("circular_b", "circular", (1,), 2),
        "correct_a": Item("correct_a", "correct", (), 2),
    }
    predictions = [
        Prediction("circular_a", True, [False, True]),
        Prediction("circular_b", False, []),
        Prediction("correct_a", True, [False, False]),  # would hurt if counted
        Prediction("circular_a", True, [True, False]),  # duplicate: first kept
        Prediction("nope", True, [True]),
    ]
    r = prmbench_results(items, predictions)
    assert r["overall"] == 100.0 and r["circular"] == 100.0
    assert r["valid_rate"] == pytest.approx(2 / 3)
    assert r["unknown_ids"] == 1
    assert "correct" not in r and r["items"] == 2


@pytest.mark.skipif(not (SHARED / "prmbench").is_dir(), reason="needs ../shared/data/prmbench")
def test_all_steps_correct_over_full_prmbench_is_below_50_with_ms_100():
    source = resolve_source(SHARED / "prmbench")
    items = metric_items(prmbench_records(source))
    assert len(items) == 6969  # 6216 records + 758 correct_* − 5 duplicate ids
    predictions = [Prediction(i.id, True, [True] * i.steps) for i in items.values()]
    r = prmbench_results(items, predictions)
    assert r["overall"] < 50
    assert r["multi_solutions"] == 100.0
    assert r["items"] == 6211


# ------------------------------------------------------------------ predictions file -----


def test_predictions_round_trip_and_bad_lines_name_the_field(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [
        prediction_record("circular_x", Judgement([True, False], redundancy=[False, True])),
        prediction_record("deception_y", Judgement(error="critic: unparseable answer")),
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = list(read_predictions(path))
    assert got[0] == Prediction("circular_x", True, [True, False], [False, True])
    assert got[1].valid is False
    path.write_text(
        json.dumps({"idx": "a", "scores": {"step_level_validity_labels": [1, 0]}}) + "\n"
    )
    with pytest.raises(InputError, match=r"p.jsonl:1: field 'scores.step_level_validity_labels'"):
        list(read_predictions(path))


def test_cli_scores_a_predictions_file_and_writes_results(tmp_path):
    items = metric_items(prmbench_records(resolve_source(None)))
    preds = tmp_path / "preds.jsonl"
    preds.write_text(
        "".join(
            json.dumps({"idx": i.id, "scores": {"step_level_validity_labels": [True] * i.steps}})
            + "\n"
            for i in items.values()
        )
    )
    out = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dgprm",
            "bench",
            "prmbench",
            "--predictions",
            str(preds),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["multi_solutions"] == 100.0 and results["valid_rate"] == 1.0
    assert (out / "chart.png").read_bytes()[:4] == b"\x89PNG"
    assert "Qwen2.5-Math-PRM-7B" in done.stdout  # published rows beside ours


# ------------------------------------------------------------------ selection, trees -----


def test_limit_applies_per_category_in_file_order():
    records = prmbench_records(resolve_source(None))
    chosen = select_records(records, limit=1)
    classes = [r["classification"] for _, r in chosen]
    assert len(classes) == len(set(classes)) == 9
    first = {}
    for item_id, r in records:
        first.setdefault(r["classification"], item_id)
    assert {i for i, _ in chosen} == set(first.values())
    with pytest.raises(InputError, match="unknown category 'nope'"):
        select_records(records, categories=["nope"])


def _tree_from(sources: list[str]) -> RewardTree:
    node = Node("p1", "parent", "x", sources=sources)
    return RewardTree([node], [], np.zeros((1, 2), np.float32), {})


def test_tree_built_on_evaluated_questions_is_refused_and_cross_fit_uses_the_other_fold():
    records = prmbench_records(resolve_source(None))
    everything = dict(records)
    fold_of = {i: question_fold(r["original_question"]) for i, r in records}
    fold0 = [i for i, f in fold_of.items() if f == 0]
    fold1 = [i for i, f in fold_of.items() if f == 1]
    assert fold0 and fold1
    with pytest.raises(InputError, match="built from 1 question"):
        assign_trees([("t", _tree_from(fold0[:1]))], records, everything)
    evaluated = [(i, r) for i, r in records if fold_of[i] == 1]
    assert assign_trees([("t", _tree_from(fold0))], evaluated, everything) == {
        i: 0 for i, _ in evaluated
    }
    which = assign_trees([("a", _tree_from(fold1)), ("b", _tree_from(fold0))], records, everything)
    assert all(which[i] == (1 if fold_of[i] == 1 else 0) for i, _ in records)
    with pytest.raises(InputError, match="pairs from both folds"):
        assign_trees(
            [("a", _tree_from(fold0 + fold1)), ("b", _tree_from(fold0))], records, everything
        )


# ------------------------------------------------------------------ runner ---------------


def _critic_answers(request):
    n = int(user_text(request).split("For each of the ")[1].split(" ")[0])
    steps = [{"validity": 1 if i != 1 else -0.5, "redundancy": -1} for i in range(n)]
    return json.dumps({"steps": steps})


def _critic_tasks(client: LLMClient, records: list[tuple[int, dict]]) -> list[Task]:
    judge = CriticJudge(client)
    return [Task(i, r["modified_question"], r["modified_process"], judge) for i, r in records]


def _judge(tasks: list[Task], out, client: LLMClient, **kwargs):
    return asyncio.run(
        judge_all(
            tasks,
            out,
            key="idx",
            client=client,
            to_record=lambda t, j: prediction_record(t.id, j),
            **kwargs,
        )
    )


def test_a_prediction_with_an_error_is_judged_again_only_with_retry_errors(tmp_path):
    server = {"up": False}

    def answer(request):
        if not server["up"]:
            raise TransientLLMError("connection refused")
        return _critic_answers(request)

    client = LLMClient(ScriptedBackend(answer), max_retries=0)
    records = select_records(prmbench_records(resolve_source(None)), limit=1)[:2]
    tasks = _critic_tasks(client, records)
    out = tmp_path / "predictions.jsonl"

    assert _judge(tasks, out, client).invalid == 2  # both predictions are error records
    server["up"] = True
    kept = _judge(tasks, out, client)
    assert (kept.items, kept.skipped_with_errors) == (0, 2)
    redone = _judge(tasks, out, client, retry_errors=True)
    assert (redone.items, redone.retried, redone.invalid) == (2, 2, 0)
    assert [p.labels[:2] for p in read_predictions(out)] == [[True, False]] * 2


def test_critic_run_resumes_and_scores(tmp_path):
    backend = ScriptedBackend(_critic_answers)
    client = LLMClient(backend)
    records = select_records(prmbench_records(resolve_source(None)), limit=1)
    tasks = _critic_tasks(client, records)
    out = tmp_path / "predictions.jsonl"

    first = _judge(tasks[:4], out, client)
    second = _judge(tasks, out, client)
    assert (first.items, second.items, second.skipped) == (4, 5, 4)
    assert len(backend.requests) == 9
    preds = list(read_predictions(out))
    assert [p.labels[:2] for p in preds] == [[True, False]] * 9
    assert all(p.redundancy_labels == [False] * len(p.labels) for p in preds)
    r = prmbench_results(metric_items(records), preds)
    assert r["valid_rate"] == 1.0 and 0 <= r["overall"] <= 100


def test_critic_answer_with_wrong_step_count_is_an_invalid_prediction():
    client = LLMClient(ScriptedBackend(lambda r: json.dumps({"steps": []})))
    judgement = asyncio.run(CriticJudge(client).judge("q?", ["a", "b"]))
    assert not judgement.valid and "critic" in judgement.error
    assert client.ledger.errors == 1


def test_run_dir_refuses_another_configuration(tmp_path):
    start_run(tmp_path, {"method": "critic"})
    start_run(tmp_path, {"method": "critic"})
    with pytest.raises(InputError, match="differs in method"):
        start_run(tmp_path, {"method": "dgprm"})


# ------------------------------------------------------------------ ProcessBench ---------


def test_processbench_metric_by_hand():
    pairs = [(3, 3), (3, 2), (0, None), (-1, -1), (-1, -1), (-1, 4)]
    r = processbench_results(pairs)
    assert r["acc_err"] == pytest.approx(100 / 3)
    assert r["acc_cor"] == pytest.approx(200 / 3)
    assert r["f1"] == pytest.approx(2 * (100 / 3) * (200 / 3) / 100)
    assert r["unparseable"] == 1


def test_processbench_average_is_over_subsets():
    rows = [
        {"subset": "gsm8k", "label": -1, "prediction": -1},
        {"subset": "gsm8k", "label": 0, "prediction": 0},
        {"subset": "math", "label": -1, "prediction": 0},
        {"subset": "math", "label": 1, "prediction": 1},
    ]
    r = results_by_subset(rows)
    assert r["gsm8k"]["f1"] == 100.0 and r["math"]["f1"] == 0.0
    assert r["average_f1"] == 50.0
    assert (SAMPLES / "processbench_gsm8k.json").is_file()


def test_library_runs_write_the_run_directory_and_resume(tmp_path):
    from dgprm.bench import prmbench, processbench

    backend = ScriptedBackend(_critic_answers)
    client = LLMClient(backend)
    first = prmbench.run(tmp_path / "pb", method="critic", limit=1, client=client)
    assert first.report is not None and first.report.items == 9
    assert {p.name for p in (tmp_path / "pb").iterdir()} >= {
        "predictions.jsonl",
        "results.json",
        "run.json",
        "chart.png",
    }
    assert first.results["valid"] == 9 and first.rows[-1][0] == first.label
    again = prmbench.run(tmp_path / "pb", method="critic", limit=1, client=client)
    assert (again.report.items, again.report.skipped, len(backend.requests)) == (0, 9, 9)
    with pytest.raises(InputError, match="another configuration"):
        prmbench.run(tmp_path / "pb", method="critic", limit=2, client=client)

    proc = processbench.run(tmp_path / "proc", method="critic", client=client)
    assert proc.report.items == 4 and proc.results["gsm8k"]["items"] == 4
    row = json.loads((tmp_path / "proc" / "predictions.jsonl").read_text().splitlines()[0])
    assert row["prediction"] == 1  # the scripted critic judges step 1 wrong
