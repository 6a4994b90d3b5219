"""The downstream benchmark runner and task pairs, end to end with a scripted policy and
judge: records, results by hand, costs, resume, retry and refused configurations."""

from __future__ import annotations

import asyncio
import json

import pytest

from dgprm.downstream.bench import DownstreamOptions, bench_downstream, strategy_picks
from dgprm.downstream.pairs import sampled_path, task_pairs
from dgprm.downstream.prm import make_prms
from dgprm.downstream.results import summarize, table_rows, wilson_interval
from dgprm.downstream.tasks import Choice, TaskRecord
from dgprm.errors import InputError
from dgprm.llm import ChatRequest, PermanentLLMError
from dgprm.records import PreferencePair, read_records
from tests.conftest import user_text
from tests.test_downstream_search import critic_answers, step_policy

RECORDS = [
    TaskRecord(
        id=f"q{i}",
        question=f"Which melts in the sun? (variant {i})",
        choices=[Choice(label="A", text="rock"), Choice(label="B", text="ice")],
        answer="B",
    )
    for i in range(3)
]


def answers(request: ChatRequest) -> str:
    """Policy and judge in one: sampled solutions by seed (B, A, unreadable, B, ...), a
    wrong greedy solution, the one-step beam policy, the critic and the outcome judge."""
    stage = request.template.split("@")[0]
    if stage == "solve":
        if request.temperature == 0:
            return "Step 1: Rocks get hot.\nAnswer: A"
        kind = request.seed % 3
        if kind == 0:
            return f"Step 1: Ice melts (seed {request.seed}).\nAnswer: B"
        if kind == 1:
            return f"Step 1: Rock melts (seed {request.seed}).\nAnswer: A"
        return "I am not sure."
    if stage == "solve_step":
        return step_policy(request)
    if stage == "score":
        return critic_answers(request)
    if stage == "outcome":
        return json.dumps({"score": 8 if "Answer: B" in user_text(request) else 3})
    raise AssertionError(request.template)


OPTIONS = DownstreamOptions(
    task="arc-c",
    prms=("none", "critic", "orm"),
    ns=(1, 2, 4),
    beam_expansions=2,
    max_steps=3,
)
SOURCE = {"task": "arc-c", "split": "test", "data": "constructed"}


def run(client, out, records=RECORDS, options=OPTIONS, **kwargs):
    prms = make_prms(list(options.scorers), judge=client)
    return asyncio.run(
        bench_downstream(
            records, out, options=options, policy=client, prms=prms, source=SOURCE, **kwargs
        )
    )


def result(results, prm, strategy, n):
    (entry,) = [
        e for e in results["results"] if (e["prm"], e["strategy"], e["n"]) == (prm, strategy, n)
    ]
    return entry


def test_run_writes_predictions_results_chart_and_run_json(scripted_client, tmp_path):
    client, _ = scripted_client(answers)
    report = run(client, tmp_path / "run")
    out = tmp_path / "run"
    assert report.items == 3 and report.invalid == 0 and report.candidates == 12
    assert report.unextractable == 3  # seed 2 of every question
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    row = rows[0]
    assert [c["answer"] for c in row["candidates"]] == ["B", "A", None, "B"]
    assert row["candidates"][0]["steps"] == ["Ice melts (seed 0).", "Answer: B"]
    critic = row["scores"]["critic"]
    assert [r["reward"] for r in critic[0]["rewards"]] == [1.0, 1.0]
    assert [r["reward"] for r in critic[1]["rewards"]] == [0.222222, 0.222222]
    assert critic[2] == {"skipped": "no extractable answer"}
    assert row["scores"]["orm"][3]["rewards"][0]["reward"] == 0.8
    assert set(row["beams"]["critic"]) == {"1", "2", "4"} and row["greedy"]["answer"] == "A"
    picks = {(p["prm"], p["strategy"], p["n"]): p for p in row["picks"]}
    assert picks[("none", "majority", 2)]["answer"] == "B"  # B, A: a tie, B first
    assert picks[("critic", "best-of-n/min", 4)]["candidate"] == 0
    assert picks[("critic", "beam", 2)]["answer"] == "B"
    assert len(picks) == 1 + 3 + 2 * (2 * 4 * 3 + 3)  # greedy, majority, 2 PRMs × (8 + beam)

    results = json.loads((out / "results.json").read_text())
    assert results["questions"] == 3 and results["candidates"]["unextractable"] == 3
    greedy = result(results, "none", "greedy", 1)
    assert (greedy["accuracy"], greedy["correct"], greedy["unextractable"]) == (0.0, 0, 0)
    majority = result(results, "none", "majority", 4)
    assert majority["accuracy"] == 1.0 and majority["ci95"] == pytest.approx(
        wilson_interval(3, 3), abs=1e-6
    )
    assert (
        majority["unextractable"] == 3
        and result(results, "none", "majority", 2)["unextractable"] == 0
    )
    # costs per question, counted exactly: 4 samples; critic: + 2 steps × 3 scored
    # candidates (one call each); orm: + 1 call per scored candidate
    assert majority["cost"]["llm_calls"] == 4 and majority["cost"]["seconds"] is not None
    assert result(results, "critic", "best-of-n/min", 4)["cost"]["llm_calls"] == 4 + 6
    assert result(results, "orm", "weighted/last", 4)["cost"]["llm_calls"] == 4 + 3
    assert result(results, "critic", "best-of-n/min", 2)["cost"]["llm_calls"] == 2 + 4
    assert result(results, "critic", "best-of-n/min", 2)["cost"]["seconds"] is None
    beam = result(results, "critic", "beam", 2)
    # 4 policy + 4 critic requests; the N = 1 search already asked some of them (cache)
    assert beam["accuracy"] == 1.0 and beam["cost"]["requests"] == 8
    assert beam["cost"]["llm_calls"] + beam["cost"]["cache_hits"] == 8
    assert greedy["cost"]["llm_calls"] == 1
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["config"]["options"]["ns"] == [1, 2, 4]
    assert run_json["invocations"][0]["items"] == 3
    assert run_json["usage"]["llm_calls"] == report.ledger.llm_calls > 0
    table = table_rows(results)
    assert table[0][:4] == ("none", "greedy", "1", "0.0")


def test_an_interrupted_run_resumes_and_reports_every_question(scripted_client, tmp_path):
    client, backend = scripted_client(answers)
    out = tmp_path / "run"
    run(client, out, RECORDS[:2])
    predictions = out / "predictions.jsonl"
    with predictions.open("a") as handle:  # a line torn by a killed run
        handle.write('{"id": "q2", "candidates": [')
    calls = len(backend.requests)
    report = run(client, out)
    assert (report.items, report.skipped) == (1, 2)
    assert len(predictions.read_text().splitlines()) == 3
    assert report.results["questions"] == 3
    assert len(backend.requests) > calls
    calls = len(backend.requests)
    again = run(client, out)
    assert (again.items, again.skipped, len(backend.requests)) == (0, 3, calls)
    assert again.results == report.results
    assert len(json.loads((out / "run.json").read_text())["invocations"]) == 3


def test_a_run_directory_refuses_another_configuration(scripted_client, tmp_path):
    client, _ = scripted_client(answers)
    run(client, tmp_path / "run", RECORDS[:1])
    # concurrency decides no result: changing it continues the run
    faster = DownstreamOptions(**{**OPTIONS.__dict__, "concurrency": 1})
    assert run(client, tmp_path / "run", RECORDS[:1], faster).skipped == 1
    other = DownstreamOptions(task="arc-c", prms=("none", "critic"), ns=(1, 2), max_steps=3)
    with pytest.raises(InputError, match="another configuration"):
        run(client, tmp_path / "run", RECORDS[:1], other)


def test_errors_are_recorded_and_redone_only_with_retry_errors(scripted_client, tmp_path):
    broken = {"on": True}

    def flaky(request: ChatRequest) -> str:
        if (
            broken["on"]
            and request.template.startswith("outcome@")
            and "variant 1" in (user_text(request))
        ):
            raise PermanentLLMError("judge down")
        return answers(request)

    client, _ = scripted_client(flaky)
    options = DownstreamOptions(
        task="arc-c", prms=("orm",), strategies=("best-of-n",), ns=(2,), aggs=("last",)
    )
    report = run(client, tmp_path / "run", options=options)
    assert report.invalid == 1 and report.scoring_errors == 2
    row = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").open()][1]
    assert row["errors"][0].startswith("orm candidate 0: step 1: orm: LLM call failed")
    pick = result(report.results, "orm", "best-of-n/last", 2)
    assert pick["scoring_failed"] == 2 and pick["no_answer"] == 1  # q1: nothing scored
    broken["on"] = False
    kept = run(client, tmp_path / "run", options=options)
    assert (kept.items, kept.skipped_with_errors) == (0, 1)
    redone = run(client, tmp_path / "run", options=options, retry_errors=True)
    assert (redone.items, redone.retried, redone.invalid) == (1, 1, 0)
    assert result(redone.results, "orm", "best-of-n/last", 2)["correct"] == 3


def test_options_are_checked():
    with pytest.raises(InputError, match="need a PRM"):
        DownstreamOptions(task="arc-c", prms=("none",), strategies=("best-of-n",))
    with pytest.raises(InputError, match="not a multiple"):
        DownstreamOptions(task="arc-c", prms=("critic",), ns=(1, 6), beam_expansions=4)
    with pytest.raises(InputError, match="temperature"):
        DownstreamOptions(task="qasc", temperature=0.0, ns=(1, 4))
    with pytest.raises(InputError, match="strategy list"):
        DownstreamOptions(task="qasc", strategies=("vote",))
    with pytest.raises(InputError, match="unknown task"):
        DownstreamOptions(task="gsm8k")


def test_picks_and_summary_from_constructed_rows():
    """Majority over prefixes of the same candidates, and accuracy with no-answer picks."""
    options = DownstreamOptions(
        task="strategyqa", prms=("none",), strategies=("majority",), ns=(1, 3)
    )
    rows = []
    for i, (answers_, gold) in enumerate(
        [(["yes", "no", "no"], "no"), ([None, None, "yes"], "yes"), ([None, "no", None], "yes")]
    ):
        row = {
            "id": f"s{i}",
            "candidates": [{"answer": a, "usage": {"llm_calls": 1}} for a in answers_],
            "greedy": {"answer": answers_[0], "usage": {"llm_calls": 1}},
            "seconds": {"sample": 3.0, "greedy": 1.0},
        }
        row["picks"] = strategy_picks(row, options, gold)
        rows.append(row)
    results = summarize(rows, task="strategyqa", split="dev", n_max=3)
    one, three = result(results, "none", "majority", 1), result(results, "none", "majority", 3)
    # N=1: yes(wrong), none, none; N=3: no(right), yes(right), no(wrong)
    assert (one["correct"], one["no_answer"], one["unextractable"]) == (0, 2, 2)
    assert (three["correct"], three["no_answer"], three["unextractable"]) == (2, 0, 4)
    assert three["cost"] == {
        "llm_calls": 3.0,
        "cache_hits": 0.0,
        "requests": 3.0,
        "tokens": 0.0,
        "seconds": 3.0,
    }
    assert result(results, "none", "greedy", 1)["no_answer"] == 2


def test_wilson_interval_by_hand():
    low, high = wilson_interval(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    assert wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


# ------------------------------------------------------------------- task pairs ---


def test_task_pairs_pair_a_correct_with_an_incorrect_solution(scripted_client, tmp_path):
    client, backend = scripted_client(answers)
    out = tmp_path / "pairs.jsonl"
    report = asyncio.run(task_pairs(RECORDS, out, policy=client, domain="arc-c", n=4))
    assert (report.pairs, report.correct, report.incorrect, report.unextractable) == (3, 6, 3, 3)
    pairs = read_records(out, PreferencePair)
    first = pairs[0]
    assert first.id == "q0/0-1" and first.domain == "arc-c"
    assert first.chosen_steps == ["Ice melts (seed 0).", "Answer: B"]
    assert first.rejected_steps == ["Rock melts (seed 1).", "Answer: A"]
    assert first.question.startswith("Which melts in the sun? (variant 0)\nChoices:\n(A) rock")
    calls = len(backend.requests)
    again = asyncio.run(task_pairs(RECORDS, out, policy=client, domain="arc-c", n=4))
    assert (again.skipped, again.pairs, len(backend.requests)) == (3, 3, calls)
    assert sampled_path(out).name == "pairs.sampled.jsonl"
    # one incorrect candidate per question: asking for two pairs still makes one
    two = asyncio.run(
        task_pairs(RECORDS, out, policy=client, domain="arc-c", n=4, pairs_per_question=2)
    )
    assert two.pairs == 3
    with pytest.raises(InputError, match="other settings"):
        asyncio.run(task_pairs(RECORDS, out, policy=client, domain="arc-c", n=3))


def test_task_pairs_without_an_incorrect_solution_make_no_pair(scripted_client, tmp_path):
    client, _ = scripted_client(lambda r: "Step 1: Ice melts.\nAnswer: B")
    report = asyncio.run(
        task_pairs(RECORDS[:2], tmp_path / "p.jsonl", policy=client, domain="arc-c", n=2)
    )
    assert (report.pairs, report.without_pair, report.correct) == (0, 2, 4)


def test_beam_alone_samples_no_whole_solutions(scripted_client, tmp_path):
    client, backend = scripted_client(answers)
    options = DownstreamOptions(
        task="arc-c", prms=("critic",), strategies=("beam",), ns=(2,), beam_expansions=2
    )
    report = run(client, tmp_path / "run", RECORDS[:1], options)
    assert report.candidates == 0 and set(backend.stages()) == {"solve_step", "score"}
    beam = result(report.results, "critic", "beam", 2)
    assert (beam["accuracy"], beam["cost"]["llm_calls"]) == (1.0, 8)
    assert [e["strategy"] for e in report.results["results"]] == ["beam"]


def test_prefixes_from_sampled_solutions_cover_every_step_boundary(tmp_path):
    from dgprm.downstream.pairs import prefixes_from_samples
    from dgprm.downstream.tasks import load_task
    from dgprm.files import write_jsonl

    records = load_task("arc-c", None, "train")[:2]
    sampled = tmp_path / "pairs.sampled.jsonl"
    write_jsonl(
        sampled,
        [
            {
                "id": records[0].id,
                "candidates": [
                    {"index": 0, "seed": 0, "text": None, "steps": [], "answer": None},
                    {
                        "index": 1,
                        "seed": 1,
                        "text": "t",
                        "steps": ["a", "b", "Answer: A"],
                        "answer": "A",
                    },
                ],
            },
            {"id": "not-asked", "candidates": []},
        ],
    )
    out = tmp_path / "prefixes.jsonl"
    assert prefixes_from_samples(sampled, out, records=records) == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["steps"] for r in rows] == [[], ["a"], ["a", "b"]]
    assert rows[0]["id"] == f"{records[0].id}/0" and records[0].question in rows[0]["question"]
    with pytest.raises(InputError, match="no sampled solution"):
        prefixes_from_samples(sampled, tmp_path / "p2.jsonl", records=records[1:])
