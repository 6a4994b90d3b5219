"""The downstream benchmark: a policy with PRM-guided selection on ARC-Challenge,
StrategyQA or QASC, into a resumable run directory.

Per question, in this order:

1. sample N_max solutions (candidate ``j`` with seed ``seed + j``); every smaller N
   uses the first N of them, so comparisons across N are paired;
2. score, with every PRM, the candidates that have an extractable answer (the others
   can win no strategy, so they are not scored: ``{"skipped": ...}``);
3. beam search, per PRM and per N (independent searches, see :mod:`.beam`);
4. the policy alone, greedy (temperature 0), when ``none`` is among the PRMs;
5. every strategy's pick for every N; the line is appended to ``predictions.jsonl``.

The run directory (:func:`dgprm.bench.rundir.start_run`) also gets ``run.json``
(configuration, models, prompt versions, usage per invocation), ``results.json``
(:func:`.results.summarize`) and ``chart.png``. Re-running the same call continues
with the questions not yet in ``predictions.jsonl`` (:class:`~dgprm.records.ResumableJsonl`);
a directory started with another configuration is refused.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dgprm.bench.rundir import PREDICTIONS, RunReport, record_invocation, start_run
from dgprm.config import RuntimeConfig, ScoringConfig
from dgprm.downstream.answers import render_question
from dgprm.downstream.beam import BeamOptions, beam_search
from dgprm.downstream.policy import (
    SOLVE_PROMPT,
    STEP_PROMPT,
    Candidate,
    sample_solutions,
    solve_once,
)
from dgprm.downstream.prm import AGGREGATIONS, PRM_NAMES, NamedPRM, solution_score
from dgprm.downstream.results import save_chart, summarize
from dgprm.downstream.strategies import Pick, best_of_n, majority_vote, weighted_vote
from dgprm.downstream.tasks import TASKS, TaskRecord
from dgprm.errors import InputError
from dgprm.files import write_json
from dgprm.llm import Ledger, LLMClient
from dgprm.progress import Progress
from dgprm.prompts import template_versions
from dgprm.records import iter_json_lines
from dgprm.runs import run_resumable
from dgprm.scoring import StepReward

STRATEGIES = ("majority", "best-of-n", "weighted", "beam")
RESULTS = "results.json"
CHART = "chart.png"


@dataclass(frozen=True)
class DownstreamOptions:
    """What ``dgprm bench downstream`` varies (every field goes into ``run.json``).

    ``prms`` may include ``none`` (the policy alone, greedy); majority vote needs no
    PRM and is reported under ``none``. ``aggs`` are the step aggregations of
    best-of-N and weighted vote (each is a strategy of its own in the results:
    ``best-of-n/min``, ...); ``beam_agg`` ranks beams.

    Example:
        >>> o = DownstreamOptions(task="arc-c", prms=("none", "critic"), ns=(4, 1))
        >>> o.ns, o.n_max, o.labels("critic")[:2]
        ((1, 4), 4, ['best-of-n/min', 'best-of-n/last'])
    """

    task: str
    prms: tuple[str, ...] = ("none",)
    strategies: tuple[str, ...] = STRATEGIES
    ns: tuple[int, ...] = (1, 4, 8)
    aggs: tuple[str, ...] = AGGREGATIONS
    temperature: float = 0.8
    seed: int = 0
    max_tokens: int = 384
    max_steps: int = 8
    beam_expansions: int = 4
    beam_agg: str = "last"
    beam_max_tokens: int = 128
    concurrency: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "ns", tuple(sorted(set(self.ns))))
        if self.task not in TASKS:
            raise InputError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        for name, allowed, what in (
            (self.prms, PRM_NAMES, "PRM"),
            (self.strategies, STRATEGIES, "strategy"),
            (self.aggs, AGGREGATIONS, "aggregation"),
        ):
            unknown = [x for x in name if x not in allowed]
            if unknown or not name or len(set(name)) != len(name):
                raise InputError(
                    f"{what} list {list(name)}: give distinct values from {', '.join(allowed)}"
                )
        if self.beam_agg not in AGGREGATIONS:
            raise InputError(f"unknown beam aggregation {self.beam_agg!r}")
        if not self.ns or self.ns[0] < 1:
            raise InputError(f"N values {list(self.ns)} must be at least 1")
        if self.temperature <= 0 and self.n_max > 1:
            raise InputError("sampling N > 1 solutions needs a temperature > 0")
        if self.concurrency < 1 or self.max_tokens < 1 or self.max_steps < 1:
            raise InputError("concurrency, max tokens and max steps must be at least 1")
        scored = [s for s in self.strategies if s != "majority"]
        if scored and not self.scorers:
            raise InputError(f"strategies {scored} need a PRM (dgprm, critic or orm)")
        if "beam" in self.strategies:
            for n in self.ns:
                self.beam(n)  # refuses an N that the expansions do not divide

    @property
    def n_max(self) -> int:
        return self.ns[-1]

    @property
    def scorers(self) -> list[str]:
        """The PRMs that score (all but ``none``)."""
        return [p for p in self.prms if p != "none"]

    def labels(self, prm: str) -> list[str]:
        """The strategy labels reported for ``prm``."""
        if prm == "none":
            return [
                *(["greedy"] if "none" in self.prms else []),
                *(["majority"] if "majority" in self.strategies else []),
            ]
        labels = [
            f"{s}/{a}" for s in ("best-of-n", "weighted") if s in self.strategies for a in self.aggs
        ]
        return [*labels, *(["beam"] if "beam" in self.strategies else [])]

    def beam(self, n: int) -> BeamOptions:
        return BeamOptions.for_n(
            n,
            expansions=self.beam_expansions,
            max_steps=self.max_steps,
            agg=self.beam_agg,
            temperature=self.temperature,
            seed=self.seed,
            max_tokens=self.beam_max_tokens,
        )

    def to_dict(self) -> dict[str, Any]:
        """The options that decide the results (for ``run.json``; not ``concurrency``)."""
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in asdict(self).items()
            if k != "concurrency"
        }


@dataclass
class DownstreamReport(RunReport):
    """What one invocation did (``items`` = questions run now)."""

    candidates: int = 0
    unextractable: int = 0
    policy_errors: int = 0
    scoring_errors: int = 0
    results: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("questions", f"{self.items} ({self.earlier_note()})"),
            ("questions with errors", str(self.invalid)),
            (
                "candidates sampled",
                f"{self.candidates} ({self.unextractable} without an extractable answer, "
                f"{self.policy_errors} policy errors)",
            ),
            ("steps or solutions whose scoring failed", str(self.scoring_errors)),
            *self.usage_rows(self.items, "question"),
        ]


def _usage(ledger: Ledger) -> dict[str, float]:
    spent = ledger.to_dict()
    spent.pop("llm_seconds", None)  # only a client's own ledger times its calls
    return spent


def _pick_row(prm: str, strategy: str, n: int, pick: Pick, gold: str) -> dict[str, Any]:
    return {
        "prm": prm,
        "strategy": strategy,
        "n": n,
        "answer": pick.answer,
        "correct": pick.answer == gold,
        "candidate": pick.candidate,
        "score": pick.score,
        "reason": pick.reason,
    }


async def _score_candidates(
    named: NamedPRM, question: str, candidates: list[Candidate], counter: LLMClient
) -> list[dict[str, Any]]:
    async def one(c: Candidate) -> dict[str, Any]:
        if c.answer is None or not c.steps:
            return {"skipped": "no extractable answer" if c.error is None else "policy error"}
        started = time.perf_counter()
        with counter.scoped() as usage:  # a scope counts the calls of every client
            rewards = await named.prm.ascore(question, c.steps)
        entry: dict[str, Any] = {
            "rewards": [r.to_dict() for r in rewards],
            "usage": _usage(usage),
            "seconds": round(time.perf_counter() - started, 3),
        }
        errors = [f"step {r.index}: {r.error}" for r in rewards if r.error]
        if errors:
            entry["error"] = "; ".join(errors)
        return entry

    return list(await asyncio.gather(*(one(c) for c in candidates)))


def _rewards(entry: dict[str, Any]) -> list[StepReward]:
    return [
        StepReward(r["index"], reward=r["reward"], error=r.get("error")) for r in entry["rewards"]
    ]


def strategy_picks(
    row: dict[str, Any], options: DownstreamOptions, gold: str
) -> list[dict[str, Any]]:
    """Every strategy's pick for every N from a question's candidates, scores and beams.

    Example:
        >>> o = DownstreamOptions(task="strategyqa", strategies=("majority",), ns=(1, 2))
        >>> row = {"candidates": [{"answer": "no"}, {"answer": "yes"}], "greedy": {"answer": "yes"}}
        >>> [(p["strategy"], p["n"], p["answer"]) for p in strategy_picks(row, o, "yes")]
        [('greedy', 1, 'yes'), ('majority', 1, 'no'), ('majority', 2, 'no')]
    """
    picks = []
    if "none" in options.prms:
        greedy = row["greedy"]["answer"]
        reason = None if greedy is not None else "the greedy solution has no extractable answer"
        picks.append(_pick_row("none", "greedy", 1, Pick(greedy, 0, None, reason), gold))
    answers = [c["answer"] for c in row["candidates"]]
    for n in options.ns:
        if "majority" in options.strategies:
            picks.append(_pick_row("none", "majority", n, majority_vote(answers[:n]), gold))
    for prm in options.scorers:
        entries = row.get("scores", {}).get(prm, [])
        for agg in options.aggs:
            scores = [solution_score(_rewards(e), agg) if "rewards" in e else None for e in entries]
            for n in options.ns:
                if "best-of-n" in options.strategies:
                    pick = best_of_n(answers[:n], scores[:n])
                    picks.append(_pick_row(prm, f"best-of-n/{agg}", n, pick, gold))
                if "weighted" in options.strategies:
                    pick = weighted_vote(answers[:n], scores[:n])
                    picks.append(_pick_row(prm, f"weighted/{agg}", n, pick, gold))
        if "beam" in options.strategies:
            for n in options.ns:
                beam = row["beams"][prm][str(n)]
                pick = Pick(beam["answer"], beam["beam"], beam["score"], beam["reason"])
                picks.append(_pick_row(prm, "beam", n, pick, gold))
    return picks


async def run_question(
    record: TaskRecord,
    options: DownstreamOptions,
    policy: LLMClient,
    prms: list[NamedPRM],
) -> dict[str, Any]:
    """Everything about one question: candidates, their step rewards per PRM, beam
    searches, the greedy solution, the picks; one line of ``predictions.jsonl``."""
    question = render_question(record)
    seconds: dict[str, float] = {}
    sampled = {"majority", "best-of-n", "weighted"} & set(options.strategies)
    scored = {"best-of-n", "weighted"} & set(options.strategies)
    candidates: list[Candidate] = []
    if sampled:  # beam search alone samples its own steps
        started = time.perf_counter()
        candidates = await sample_solutions(
            policy,
            record,
            options.n_max,
            temperature=options.temperature,
            seed=options.seed,
            max_tokens=options.max_tokens,
            max_steps=options.max_steps,
        )
        seconds["sample"] = time.perf_counter() - started
    row: dict[str, Any] = {
        "id": record.id,
        "question": record.question,
        "choices": None if record.choices is None else [c.model_dump() for c in record.choices],
        "gold": record.answer,
        "candidates": [c.to_dict() for c in candidates],
        "scores": {},
        "beams": {},
    }
    errors = [f"candidate {c.index}: {c.error}" for c in candidates if c.error]
    for named in prms:
        if scored:
            started = time.perf_counter()
            entries = await _score_candidates(named, question, candidates, policy)
            seconds[f"score:{named.name}"] = time.perf_counter() - started
            row["scores"][named.name] = entries
            errors += [
                f"{named.name} candidate {i}: {e['error']}"
                for i, e in enumerate(entries)
                if "error" in e
            ]
        if "beam" in options.strategies:
            row["beams"][named.name] = {}
            for n in options.ns:
                started = time.perf_counter()
                with policy.scoped() as usage:  # policy and PRM calls alike
                    result = await beam_search(policy, named.prm, record, options.beam(n))
                beam = result.to_dict()
                beam["usage"] = _usage(usage)
                beam["seconds"] = round(time.perf_counter() - started, 3)
                row["beams"][named.name][str(n)] = beam
                errors += [f"{named.name} beam N={n}: {e}" for e in result.scoring_errors]
                errors += [f"{named.name} beam N={n}: policy error"] * result.policy_errors
    if "none" in options.prms:
        started = time.perf_counter()
        greedy = await solve_once(
            policy,
            record,
            0,
            temperature=0.0,
            seed=options.seed,
            max_tokens=options.max_tokens,
            max_steps=options.max_steps,
        )
        seconds["greedy"] = time.perf_counter() - started
        row["greedy"] = greedy.to_dict()
        if greedy.error:
            errors.append(f"greedy: {greedy.error}")
    row["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    row["picks"] = strategy_picks(row, options, record.answer)
    row["errors"] = errors
    return row


def run_config(
    options: DownstreamOptions,
    policy: LLMClient,
    prms: list[NamedPRM],
    source: dict[str, Any],
) -> dict[str, Any]:
    """What identifies a run (``run.json``'s ``config``): a resumed run must match it."""
    return {
        "benchmark": "downstream",
        **source,
        "options": options.to_dict(),
        "policy_model": policy.model_id,
        "prms": {p.name: p.config for p in prms},
        "judge_models": sorted(
            {
                p.prm.client.model_id
                for p in prms
                if isinstance(getattr(p.prm, "client", None), LLMClient)
            }
        ),
        "prompts": template_versions(SOLVE_PROMPT, STEP_PROMPT),
    }


def _check_prms(options: DownstreamOptions, prms: list[NamedPRM]) -> None:
    given = [p.name for p in prms]
    if given != options.scorers:
        raise InputError(f"PRM objects {given} do not match the PRMs asked for {options.scorers}")


async def bench_downstream(
    records: list[TaskRecord],
    out: str | Path,
    *,
    options: DownstreamOptions,
    policy: LLMClient,
    prms: list[NamedPRM],
    source: dict[str, Any],
    progress: Progress | None = None,
    retry_errors: bool = False,
) -> DownstreamReport:
    """Run the downstream benchmark for ``records`` into the run directory ``out``.

    ``source`` identifies the data in ``run.json`` (e.g. ``{"task", "split", "data",
    "sha256", "limit"}``); ``prms`` are the PRM objects for ``options.scorers``, in
    that order (:func:`dgprm.downstream.prm.make_prms`). Questions already in
    ``predictions.jsonl`` are kept; with ``retry_errors`` those whose line has errors
    are run again. Writes ``results.json`` and ``chart.png`` over every selected
    question in the file, and returns this invocation's report (``report.results``
    holds the results).
    """
    if not records:
        raise InputError("no questions selected")
    _check_prms(options, prms)
    out = Path(out)
    run = start_run(out, run_config(options, policy, prms, source))
    report = DownstreamReport()
    clients = [
        policy,
        *(p.prm.client for p in prms if isinstance(getattr(p.prm, "client", None), LLMClient)),
    ]
    ids = {r.id for r in records}

    async def one(record: TaskRecord) -> dict[str, Any]:
        row = await run_question(record, options, policy, prms)
        report.invalid += bool(row["errors"])
        report.candidates += len(row["candidates"])
        report.unextractable += sum(c["answer"] is None for c in row["candidates"])
        report.policy_errors += sum("error" in c for c in row["candidates"])
        report.scoring_errors += sum(
            "error" in e for entries in row["scores"].values() for e in entries
        ) + sum(len(b["scoring_errors"]) for bs in row["beams"].values() for b in bs.values())
        return row

    await run_resumable(
        records,
        out / PREDICTIONS,
        one,
        report,
        clients=clients,
        concurrency=options.concurrency,
        progress=progress,
        stage="questions",
        retry_errors=retry_errors,
    )
    record_invocation(out, run, report)
    rows = [row for _, row in iter_json_lines(out / PREDICTIONS) if row["id"] in ids]
    order = {r.id: i for i, r in enumerate(records)}
    rows.sort(key=lambda row: order[row["id"]])
    report.results = summarize(
        rows, task=options.task, split=str(source.get("split")), n_max=options.n_max
    )
    write_json(out / RESULTS, report.results)
    save_chart(out / CHART, report.results)
    return report


async def arun(
    out: str | Path,
    *,
    options: DownstreamOptions,
    data: str | Path | None = None,
    split: str = "test",
    limit: int | None = None,
    policy: str = "embedded",
    tree: str | Path | None = None,
    scoring: ScoringConfig | None = None,
    runtime: RuntimeConfig | None = None,
    retry_errors: bool = False,
    progress: Progress | None = None,
) -> DownstreamReport:
    """``dgprm bench downstream``: the first ``limit`` questions of ``options.task``'s
    ``split`` (from ``data``, default: the packaged samples), solved by ``policy`` (an LLM
    spec, e.g. ``hf:runs/dpo``) and picked by each PRM of ``options.prms`` (judged by
    ``runtime.llm``; ``dgprm`` needs ``tree``), into the resumable run directory ``out``.
    One client serves policy and judge when their specs are equal."""
    from dgprm.bench.rundir import check_run_dir
    from dgprm.downstream.prm import make_prms
    from dgprm.downstream.tasks import load_task, task_file
    from dgprm.embed import make_embedder
    from dgprm.files import file_sha256
    from dgprm.llm import make_client
    from dgprm.tree.model import RewardTree, tree_embedder_spec

    out = Path(out)
    check_run_dir(out, [data, tree])
    scoring, runtime = scoring or ScoringConfig(), runtime or RuntimeConfig()
    records = load_task(options.task, data, split, limit)
    path = task_file(options.task, data, split)
    loaded = RewardTree.load(tree) if tree is not None else None
    embedder = None
    if "dgprm" in options.prms:
        embedder = make_embedder(
            tree_embedder_spec(loaded, runtime.embedder), timeout=runtime.timeout
        )
    judge = make_client(runtime)
    solver = judge if policy == runtime.llm else make_client(runtime.replace(llm=policy))
    try:
        prms = make_prms(
            [p for p in options.prms if p != "none"],
            judge=judge,
            scoring=scoring,
            runtime=runtime,
            tree=loaded,
            tree_path=str(tree) if tree is not None else None,
            embedder=embedder,
        )
        source = {
            "task": options.task,
            "split": split,
            "data": str(path),
            "sha256": file_sha256(path),
            "limit": limit,
            "policy": policy,
            "llm": runtime.llm,
        }
        return await bench_downstream(
            records,
            out,
            options=options,
            policy=solver,
            prms=prms,
            source=source,
            progress=progress,
            retry_errors=retry_errors,
        )
    finally:
        await judge.aclose()
        if solver is not judge:
            await solver.aclose()


def run(out: str | Path, **options: Any) -> DownstreamReport:
    """Synchronous twin of :func:`arun` (same options)."""
    return asyncio.run(arun(out, **options))
