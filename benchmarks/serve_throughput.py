"""Throughput and latency of ``dgprm serve``'s ``/get_reward``, its memory over many requests,
and the Ray path against a single process, all against the stub LLM server.

Setting: a stub OpenAI-compatible server on 127.0.0.1 (``stub_llm.py``, own process) answers
after a fixed delay; its aspects quote the step, so every step's aspects are new texts for
the real MiniLM embedder (``minilm``, as users run it). The tree (6 parents × 10 children)
is embedded with MiniLM. ``--embedder server`` moves embedding out of the server's process,
as a deployment with an embedding server does: tree and aspects are embedded by the stub's
``/v1/embeddings`` (hash vectors, no delay), so the table shows what the server itself
costs. ``dgprm serve`` runs as users run it (its own process, SQLite response cache, access
log to /dev/null). Each request is one OpenAI-style query (chat
prompt + a response of ``--steps`` unique steps).

Ideal: a request is three dependent LLM calls per step (R, Φ, S), its steps in parallel, so
it takes 3 × delay at best; the server keeps at most ``--concurrency`` calls in flight. With
N clients: ideal requests/s = min(N × steps, concurrency) / (3 × steps × delay).

Usage: python benchmarks/serve_throughput.py [--delay 0.05] [--concurrency 32] [--steps 2]
       [--clients 8 32 64] [--seconds 20] [--memory-requests 10000] [--ray-trajectories 96]
       [--embedder minilm|server]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from stub_llm import start_stub

from dgprm.embed import make_embedder
from dgprm.tree.model import Criterion, Node, RewardTree

PROMPT = "<|im_start|>user\nQuestion {i}: what is {i} + {i}?<|im_end|>\n<|im_start|>assistant\n"
TOPICS = ["arithmetic", "algebra", "units", "logic", "definitions", "notation"]


def embedded_tree(directory: Path, spec: str = "minilm") -> Path:
    """A 6 × 10 tree whose node vectors are embeddings of their texts by ``spec``."""
    embedder = make_embedder(spec)
    nodes, criteria, texts = [], [], []
    for p, topic in enumerate(TOPICS):
        kids = [f"c{p}_{k}" for k in range(10)]
        nodes.append(Node(f"p{p}", "parent", f"The step handles {topic} correctly", children=kids))
    for p, topic in enumerate(TOPICS):
        for k in range(10):
            text = f"Each {topic} operation of kind {k} in the step is carried out correctly"
            texts.append(text)
            criteria.append(Criterion(f"x/{p}_{k}", "x", topic, text, True, child=f"c{p}_{k}"))
            nodes.append(
                Node(
                    f"c{p}_{k}",
                    "child",
                    text,
                    parent=f"p{p}",
                    members=[f"x/{p}_{k}"],
                    sources=["x"],
                )
            )
    children = embedder.encode(texts)
    parents = embedder.encode([n.text for n in nodes[: len(TOPICS)]])
    vectors = np.concatenate([parents, children, children]).astype(np.float32)
    manifest = {"embedder": embedder.model_id, "embedder_spec": spec}
    return RewardTree(nodes, criteria, vectors, manifest).save(directory / "tree")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads); ``None``: this one."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(
    tree: Path, llm: str, concurrency: int, cache: str
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "dgprm", "serve", "--tree", str(tree), "--llm", llm]
    command += ["--concurrency", str(concurrency), "--port", str(port)]
    command += ["--cache", cache]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.3)
    server.kill()
    raise RuntimeError("dgprm serve did not start")


class Load:
    """N concurrent clients posting unique /get_reward requests back to back."""

    def __init__(self, url: str, steps: int) -> None:
        self.url, self.steps, self.counter = url, steps, 0
        self.failures: list[str] = []

    def body(self) -> dict:
        self.counter += 1
        i = self.counter
        prompt = PROMPT.format(i=i)
        response = "\n".join(
            f"Step {s + 1}: in request {i}, {i} + {i} gives {2 * i + s} by step {s}"
            for s in range(self.steps)
        )
        return {"query": [prompt + response + "<|im_end|>"], "prompts": [prompt], "labels": [""]}

    async def run(
        self,
        clients: int,
        *,
        seconds: float | None = None,
        requests: int | None = None,
        on_progress=None,  # noqa: ANN001 (a callback(done))
    ) -> tuple[list[float], float, int]:
        latencies: list[float] = []
        errors = 0
        stop_at = time.perf_counter() + seconds if seconds else None
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=self.url, timeout=120, limits=limits) as http:

            async def client() -> None:
                nonlocal errors
                while True:
                    if stop_at is not None and time.perf_counter() >= stop_at:
                        return
                    if requests is not None and len(latencies) + errors >= requests:
                        return
                    started = time.perf_counter()
                    try:
                        answer = await http.post("/get_reward", json=self.body())
                    except httpx.TransportError as exc:
                        errors += 1
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                        continue
                    if answer.status_code == 200:
                        latencies.append(time.perf_counter() - started)
                        if on_progress is not None:
                            on_progress(len(latencies))
                    else:
                        errors += 1
                        self.failures.append(f"HTTP {answer.status_code}: {answer.text[:200]}")

            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            wall = time.perf_counter() - started
        return latencies, wall, errors


def throughput(url: str, args: argparse.Namespace, pids: dict[str, int | None]) -> None:
    load = Load(url, args.steps)
    asyncio.run(load.run(8, seconds=3))  # warm-up: connections, caches, code paths
    d, c, k = args.delay, args.concurrency, args.steps
    print(
        f"\n/get_reward: {k} steps per query (3 LLM calls each), stub delay {d * 1000:.0f} ms, "
        f"server --concurrency {c}, {args.seconds:.0f} s per level"
    )
    print(
        "| clients | requests | req/s | ideal req/s | of ideal | p50 ms | p99 ms | ideal ms "
        "| LLM calls/s | errors |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cpu_rows = []
    for n in args.clients:
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        latencies, wall, errors = asyncio.run(load.run(n, seconds=args.seconds))
        used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        cpu_rows.append((n, len(latencies), wall, used))
        rate = len(latencies) / wall
        ideal = min(n * k, c) / (3 * k * d)
        ideal_latency = 3 * d * max(1.0, n * k / c)
        p50, p99 = (np.percentile(latencies, q) * 1000 for q in (50, 99))
        print(
            f"| {n} | {len(latencies)} | {rate:.1f} | {ideal:.1f} | {100 * rate / ideal:.0f} % "
            f"| {p50:.0f} | {p99:.0f} | {ideal_latency * 1000:.0f} | {rate * 3 * k:.0f} "
            f"| {errors} |"
        )
    for failure in sorted(set(load.failures)):
        print(f"  error: {failure} ({load.failures.count(failure)}×)")
    cores = os.cpu_count() or 1
    names = list(pids)
    print(f"\nCPU per request (ms), by process; the CPU bound is {cores} cores / the total")
    print("| clients | " + " | ".join(names) + " | total | cores busy | CPU-bound req/s |")
    print("|---:|" + "---:|" * (len(names) + 3))
    for n, done, wall, used in cpu_rows:
        total = sum(used.values())
        per = " | ".join(f"{1000 * used[name] / max(done, 1):.1f}" for name in names)
        bound = cores * done / total if total else float("inf")
        print(
            f"| {n} | {per} | {1000 * total / max(done, 1):.1f} | {total / wall:.2f} "
            f"| {bound:.0f} |"
        )


def memory(url: str, pid: int, args: argparse.Namespace) -> None:
    total, every = args.memory_requests, max(1, args.memory_requests // 10)
    samples: list[tuple[int, float]] = [(0, rss_mib(pid))]

    def progress(done: int) -> None:
        if done % every == 0:
            samples.append((done, rss_mib(pid)))

    load = Load(url, args.steps)
    latencies, wall, errors = asyncio.run(load.run(32, requests=total, on_progress=progress))
    print(
        f"\nserver memory over {len(latencies)} requests at 32 clients "
        f"({wall:.0f} s, {errors} errors)"
    )
    print("| requests | RSS MiB |")
    print("|---:|---:|")
    for done, mib in samples:
        print(f"| {done} | {mib:.1f} |")


class Stamps:
    """A progress sink that notes when each record was written."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, stage: str, amount: int = 1) -> None:
        self.times.append(time.perf_counter())


def ray_path(tree: Path, llm: str, args: argparse.Namespace, work: Path) -> None:
    import ray

    from dgprm.config import RuntimeConfig, ScoringConfig
    from dgprm.records import Trajectory
    from dgprm.scoring import ascore_file

    items = [
        Trajectory(
            id=f"t{i}",
            question=f"Question {i}: what is {i} + {i}?",
            steps=[f"in trajectory {i}, step {s} gives {2 * i + s}" for s in range(args.steps)],
        )
        for i in range(args.ray_trajectories)
    ]
    started = time.perf_counter()
    ray.init(
        num_cpus=2, include_dashboard=False, logging_level="WARNING", _node_ip_address="127.0.0.1"
    )
    ray_start = time.perf_counter() - started
    print(
        f"\nRay: {len(items)} trajectories × {args.steps} steps, --concurrency {args.concurrency} "
        f"per process, own cache per run (local Ray started in {ray_start:.0f} s, not counted); "
        "steady = from the first record written to the last"
    )
    print(
        "| run | workers | LLM calls | wall s | first record after s | calls/s (wall) "
        "| calls/s (steady) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, options in (("single process", {}), ("Ray", {"ray": "auto", "ray_workers": 2})):
        runtime = RuntimeConfig(
            llm=llm, concurrency=args.concurrency, cache=str(work / f"{name}.sqlite")
        )
        out = work / f"{name}.jsonl"
        stamps = Stamps()
        started = time.perf_counter()
        report = asyncio.run(
            ascore_file(
                items,
                out,
                tree=tree,
                scoring=ScoringConfig(),
                runtime=runtime,
                progress=stamps,
                **options,
            )
        )
        wall = time.perf_counter() - started
        calls = report.ledger.llm_calls
        first, last = stamps.times[0] - started, stamps.times[-1] - stamps.times[0]
        steady = calls * (len(stamps.times) - 1) / len(stamps.times) / last
        print(
            f"| {name} | {options.get('ray_workers', 1)} | {calls} | {wall:.1f} | {first:.1f} "
            f"| {calls / wall:.0f} | {steady:.0f} |"
        )
    ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--clients", type=int, nargs="*", default=[8, 32, 64])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--memory-requests", type=int, default=10_000)
    parser.add_argument("--ray-trajectories", type=int, default=96)
    parser.add_argument(
        "--same-aspects",
        action="store_true",
        help="the stub writes one aspect for every step (the embedder's cache answers it)",
    )
    parser.add_argument(
        "--embedder",
        choices=["minilm", "server"],
        default="minilm",
        help="MiniLM in the server's process, or the stub's /v1/embeddings (see above)",
    )
    parser.add_argument(
        "--cache", help="the server's response cache (default: a new SQLite file; ':memory:')"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dgprm-serve-bench-"))
    stub, stub_url = start_stub(args.delay, echo=not args.same_aspects)
    llm = f"openai:{stub_url}#stub"
    server = None
    try:
        spec = "minilm" if args.embedder == "minilm" else f"openai:{stub_url}#hash"
        tree = embedded_tree(work, spec)
        print(f"embedder: {spec}")
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        cache = args.cache or str(work / "cache.sqlite")
        server, url = start_server(tree, llm, args.concurrency, cache)
        if args.clients:
            pids = {"server": server.pid, "stub": stub.pid, "load generator": None}
            throughput(url, args, pids)
        if args.memory_requests:
            memory(url, server.pid, args)
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
        server = None
        if args.ray_trajectories:
            ray_path(tree, llm, args, work)
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    finally:
        if server is not None:
            server.kill()
        stub.terminate()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
