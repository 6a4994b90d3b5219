"""Scale-out on a local Ray with 2 CPUs: sharded output equals single-process output, and a
run whose worker was killed resumes shard by shard."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from dgprm.config import ScoringConfig
from dgprm.pairs import PairsReport, export_pairs, score_prefixes
from dgprm.records import Prefix, Trajectory
from dgprm.scale import ShardError, run_sharded, shard_of, shards_dir
from dgprm.scoring import ScoreReport, score_many
from tests import ray_workers
from tests.conftest import KeywordEmbedder, critic_answer, openai_stub, small_tree
from tests.test_pairs import SCORES
from tests.test_pairs import judge as pairs_judge

ray = pytest.importorskip("ray", reason="the test extra installs ray")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray with 2 CPUs for the module; yields its address."""
    ray.init(
        num_cpus=2,
        _node_ip_address="127.0.0.1",  # a local cluster on the loopback interface only
        include_dashboard=False,
        logging_level="WARNING",
        object_store_memory=128 * 1024 * 1024,
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def lines(path) -> dict[str, dict]:
    """Output lines by id, without the one field that differs between runs (time in calls)."""
    rows = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        row.get("usage", {}).pop("llm_seconds", None)
        rows[row["id"]] = row
    return rows


TREE = small_tree(KeywordEmbedder(dim=64))
SCORING = ScoringConfig()
ITEMS = [
    Trajectory(id=f"t{i}", question=f"What is {i}+{i}?", steps=[f"{i}+{i} = {2 * i}", "done"])
    for i in range(10)
]


def single_process(tmp_path):
    out = tmp_path / "single.jsonl"
    asyncio.run(score_many(ray_workers.scripted_scorer(TREE, SCORING), ITEMS, out))
    return lines(out)


def sharded(out, cluster, die_at=None, concurrency=4):
    report = ScoreReport()
    asyncio.run(
        run_sharded(
            ITEMS,
            out,
            ray_workers.score_work,
            (TREE, SCORING, die_at),
            report,
            on_record=lambda _, record: report.add(record),
            address=cluster,
            workers=2,
            concurrency=concurrency,
        )
    )
    return report


def test_sharded_output_is_the_single_process_output(cluster, tmp_path):
    assert {shard_of(t.id, 2) for t in ITEMS} == {0, 1}  # both workers get work
    out = tmp_path / "sharded.jsonl"
    report = sharded(out, cluster)
    assert lines(out) == single_process(tmp_path)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [
        t.id for t in ITEMS
    ]  # merged in input order
    assert not shards_dir(out).exists()
    assert (report.done, report.skipped, report.steps, report.failed_steps) == (10, 0, 20, 0)
    assert report.ledger.llm_calls == 10 * 2 * 3  # the workers' usage, summed on the driver
    again = sharded(out, cluster)  # everything is there: nothing to do, no worker started
    assert (again.done, again.skipped) == (0, 10)


def test_a_run_whose_worker_was_killed_resumes_shard_by_shard(cluster, tmp_path):
    out = tmp_path / "sharded.jsonl"
    shards = [[t.id for t in ITEMS if shard_of(t.id, 2) == k] for k in (0, 1)]
    victim = shards[0][2]  # shard 0's third item kills its worker
    with pytest.raises(ShardError, match="run the same command again") as failure:
        sharded(out, cluster, die_at=victim, concurrency=1)
    assert isinstance(failure.value.__cause__, ray.exceptions.RayActorError)
    shard0 = shards_dir(out) / "shard-0-of-2.jsonl"
    shard1 = shards_dir(out) / "shard-1-of-2.jsonl"
    assert [json.loads(x)["id"] for x in shard0.read_text().splitlines()] == shards[0][:2]
    assert sorted(lines(shard1)) == sorted(shards[1])  # the other shard ran to its end
    assert not out.exists() or out.read_text() == ""
    left = len(shards[0]) - 2
    report = sharded(out, cluster)
    assert (report.done, report.skipped) == (left, 10 - left)  # what the dead worker left
    assert lines(out) == single_process(tmp_path)
    assert not shards_dir(out).exists()


def test_sharded_pairs_are_the_single_process_pairs(cluster, tmp_path):
    prefixes = [
        Prefix(id=f"q{i}", question="What is 2+3, in metres?", steps=["Add the numbers."])
        for i in range(4)
    ]
    candidates = {p.id: list(SCORES) for p in prefixes}
    single = tmp_path / "single.scored.jsonl"
    one = asyncio.run(
        score_prefixes(
            ray_workers.scripted_scorer(TREE, SCORING, pairs_judge),
            prefixes,
            single,
            candidates=candidates,
        )
    )
    scored = tmp_path / "sharded.scored.jsonl"
    report = PairsReport()
    asyncio.run(
        run_sharded(
            prefixes,
            scored,
            ray_workers.pairs_work,
            (TREE, SCORING, pairs_judge, candidates),
            report,
            on_record=lambda prefix, record: report.add(prefix, record, candidates),
            address=cluster,
            workers=2,
        )
    )
    assert lines(scored) == lines(single)
    assert report.candidates == one.candidates == 16
    ids = [p.id for p in prefixes]
    export_pairs(single, tmp_path / "a.jsonl", ids, PairsReport())
    export_pairs(scored, tmp_path / "b.jsonl", ids, PairsReport())
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_cli_score_with_ray_writes_the_lines_of_a_single_process_run(cluster, tmp_path):
    trajectories = tmp_path / "traj.jsonl"
    trajectories.write_text("".join(t.model_dump_json() + "\n" for t in ITEMS))
    with openai_stub(critic_answer) as llm:
        common = ["--no-tree", "--llm", llm, "--cache", tmp_path / "cache.sqlite"]

        def score(out, *extra):
            return subprocess.run(
                [sys.executable, "-m", "dgprm", "score", trajectories, "-o", out, *common, *extra],
                capture_output=True,
                text=True,
                timeout=300,
            )

        single = score(tmp_path / "single.jsonl")
        assert single.returncode == 0, single.stderr
        run = score(tmp_path / "ray.jsonl", "--ray", cluster, "--ray-workers", "2")
        assert run.returncode == 0, run.stderr
    assert "trajectories" in run.stderr and "10 (+0 from an earlier run)" in run.stderr
    a, b = lines(tmp_path / "single.jsonl"), lines(tmp_path / "ray.jsonl")
    for row in (*a.values(), *b.values()):  # the second run's calls come from the cache
        row.pop("usage")
    assert a == b and a["t0"]["steps"][0]["vector"] == [0.777778]


def test_make_pairs_with_ray_builds_each_workers_own_clients_from_the_specs(cluster, tmp_path):
    from dgprm.config import RuntimeConfig
    from dgprm.pairs import amake_pairs

    prefixes = [Prefix(id=f"q{i}", question="What is 2+3?", steps=["Add."]) for i in range(4)]
    candidates = {p.id: ["2+3 = 5", "2+3 = 6 is wrong"] for p in prefixes}
    with openai_stub(critic_answer) as llm:
        runtime = RuntimeConfig(llm=llm, cache=str(tmp_path / "c.sqlite"))

        def make(out, **ray):
            return asyncio.run(
                amake_pairs(
                    prefixes,
                    out,
                    tree=TREE,
                    candidates=candidates,
                    scoring=ScoringConfig(mode="no-tree"),
                    runtime=runtime,
                    **ray,
                )
            )

        single = make(tmp_path / "single.jsonl")
        sharded = make(tmp_path / "ray.jsonl", ray=cluster, ray_workers=2)
    assert (tmp_path / "single.jsonl").read_text() == (tmp_path / "ray.jsonl").read_text()
    assert sharded.pairs == single.pairs == 4 and sharded.candidates == 8
    assert lines(tmp_path / "ray.scored.jsonl") == lines(tmp_path / "single.scored.jsonl")
