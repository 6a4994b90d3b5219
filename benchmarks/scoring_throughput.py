"""Scoring throughput against a local OpenAI-compatible stub, ζ-matching latency, and the
share of wall time spent outside LLM calls with the embedded model.

The stub listens on 127.0.0.1 only, answers every chat request with a minimal
instance of the request's JSON schema after a fixed delay, and stops with the
script. Ideal time = LLM calls × delay ÷ concurrency.

The tree's vectors and the aspects are embedded with the real MiniLM embedder, as users
run it; ``--embedder hash`` adds a row with a hash stand-in that costs nothing. The stub's
aspects quote the step being judged, so every step's aspects are new texts for the embedder.

Usage: python benchmarks/scoring_throughput.py [--delay 0.05] [--trajectories 96]
       [--concurrency 1 8 32] [--embedder minilm hash] [--embedded]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np
from stub_llm import start_stub

from dgprm.config import ScoringConfig
from dgprm.embed import Embedder, make_embedder, normalise_rows
from dgprm.llm import LLMClient
from dgprm.llm.openai import OpenAIBackend
from dgprm.records import Trajectory
from dgprm.scoring import ChildIndex, StepScorer, score_many
from dgprm.tree.model import Criterion, Node, RewardTree


class HashEmbedder:
    """Cheap deterministic embedder so the benchmark measures dgprm, not an encoder."""

    model_id = "bench-hash"

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=self.dim) for t in texts]
        return normalise_rows(np.array(rows))


def synthetic_tree(parents: int, children_per_parent: int, embedder: Embedder) -> RewardTree:
    """A tree of ``parents`` × ``children_per_parent`` criteria embedded with ``embedder``."""
    nodes, criteria = [], []
    texts = [
        f"criterion {k} of topic {p}: the step handles aspect {p}.{k} correctly"
        for p in range(parents)
        for k in range(children_per_parent)
    ]
    child_vectors = embedder.encode(texts)
    dim = child_vectors.shape[1]
    for p in range(parents):
        kids = [f"c{p}_{k}" for k in range(children_per_parent)]
        nodes.append(Node(f"p{p}", "parent", f"parent criterion {p}", children=kids))
    for p in range(parents):
        for k in range(children_per_parent):
            cid = f"x/{p}_{k}"
            criteria.append(Criterion(cid, "x", "t", "d", True, child=f"c{p}_{k}"))
            nodes.append(
                Node(
                    f"c{p}_{k}",
                    "child",
                    f"child {p}.{k}",
                    parent=f"p{p}",
                    members=[cid],
                    sources=["x"],
                )
            )
    parent_rows = normalise_rows(child_vectors.reshape(parents, children_per_parent, dim).mean(1))
    vectors = np.concatenate([parent_rows, child_vectors, child_vectors])
    return RewardTree(nodes, criteria, vectors, {"embedder": embedder.model_id})


def throughput(delay: float, n_traj: int, steps: int, levels: list[int], spec: str) -> None:
    server, url = start_stub(delay, echo=True)
    embedder: Embedder = HashEmbedder() if spec == "hash" else make_embedder(spec)
    tree = synthetic_tree(6, 10, embedder)
    items = [
        Trajectory(
            id=f"t{i}", question=f"question {i}", steps=[f"step {j} of {i}" for j in range(steps)]
        )
        for i in range(n_traj)
    ]
    print(
        f"\nembedder {embedder.model_id}; stub delay {delay * 1000:.0f} ms, {n_traj} "
        f"trajectories × {steps} steps, 3 calls per step, no cache"
    )
    print(
        f"{'concurrency':>11} {'calls':>6} {'wall s':>8} {'ideal s':>8} {'calls/s':>8} "
        f"{'of ideal':>9}"
    )
    try:
        for concurrency in levels:
            backend = OpenAIBackend(url, "stub", api_key="x")
            client = LLMClient(backend, cache=None, concurrency=concurrency)
            scorer = StepScorer(tree, client, embedder, ScoringConfig())
            out = f"/tmp/dgprm-bench-{concurrency}.jsonl"
            open(out, "w").close()
            started = time.perf_counter()
            asyncio.run(run_scoring(scorer, client, items, out, concurrency))
            wall = time.perf_counter() - started
            calls = client.ledger.llm_calls
            ideal = calls * delay / concurrency
            print(
                f"{concurrency:>11} {calls:>6} {wall:>8.2f} {ideal:>8.2f} {calls / wall:>8.1f} "
                f"{100 * ideal / wall:>8.0f}%"
            )
    finally:
        server.terminate()


async def run_scoring(
    scorer: StepScorer, client: LLMClient, items: list[Trajectory], out: str, concurrency: int
) -> None:
    try:
        await score_many(scorer, items, out, concurrency=concurrency)
    finally:
        await client.aclose()  # no connections left open for the next level


def matching_latency() -> None:
    print("\nζ-matching latency, 384-d, 3 aspects per step")
    print(f"{'children':>9} {'searched':>9} {'ms/step':>8}")
    rng = np.random.default_rng(1)
    for parents, per in ((100, 1000),):
        ids = {f"p{p}": [f"c{p}_{k}" for k in range(per)] for p in range(parents)}
        vecs = normalise_rows(rng.normal(size=(parents * per, 384)))
        vectors = {c: vecs[i] for i, c in enumerate(c for cs in ids.values() for c in cs)}
        index = ChildIndex(ids, vectors)
        aspects = normalise_rows(rng.normal(size=(3, 384)))
        for chosen in (list(ids)[:3], list(ids)):
            index.match(aspects, chosen, 0.2)
            runs = 50
            started = time.perf_counter()
            for _ in range(runs):
                index.match(aspects, chosen, 0.2)
            ms = (time.perf_counter() - started) / runs * 1000
            print(f"{parents * per:>9} {len(chosen) * per:>9} {ms:>8.2f}")


def embedded_share() -> None:
    from dgprm.embed import make_embedder
    from dgprm.llm import make_backend

    embedder = make_embedder("minilm")
    texts = [
        "Arithmetic operations are computed correctly.",
        "Each equation follows from the previous step.",
        "Units are converted consistently.",
    ]
    vectors = embedder.encode(texts)
    nodes = [
        Node("p1", "parent", "Calculations are correct", children=["c1", "c2"]),
        Node("p2", "parent", "Units are right", children=["c3"]),
    ]
    criteria = [
        Criterion(f"x/{i}", "x", "t", t, True, child=f"c{i + 1}") for i, t in enumerate(texts)
    ]
    nodes += [
        Node(
            f"c{i + 1}",
            "child",
            t,
            parent="p1" if i < 2 else "p2",
            members=[f"x/{i}"],
            sources=["x"],
        )
        for i, t in enumerate(texts)
    ]
    rows = np.concatenate([np.stack([vectors[:2].mean(0), vectors[2]]), vectors, vectors])
    tree = RewardTree(nodes, criteria, rows, {"embedder": embedder.model_id})
    client = LLMClient(make_backend("embedded"), cache=None, concurrency=1)
    scorer = StepScorer(tree, client, embedder, ScoringConfig())
    items = [
        Trajectory(
            id="e1", question="What is 12 + 30?", steps=["12 + 30 = 42.", "So the answer is 42."]
        )
    ]
    open("/tmp/dgprm-bench-embedded.jsonl", "w").close()
    started = time.perf_counter()
    asyncio.run(score_many(scorer, items, "/tmp/dgprm-bench-embedded.jsonl", concurrency=1))
    wall = time.perf_counter() - started
    inside = client.ledger.llm_seconds
    print(
        f"\nembedded model, 1 trajectory × 2 steps, concurrency 1: wall {wall:.1f} s, "
        f"in LLM calls {inside:.1f} s, outside {100 * (wall - inside) / wall:.0f}% "
        "(includes model load)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--trajectories", type=int, default=96)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--embedder", nargs="+", default=["minilm", "hash"])
    parser.add_argument("--embedded", action="store_true", help="also time the embedded model")
    args = parser.parse_args()
    for spec in args.embedder:
        throughput(args.delay, args.trajectories, args.steps, args.concurrency, spec)
    matching_latency()
    if args.embedded:
        embedded_share()


if __name__ == "__main__":
    main()
