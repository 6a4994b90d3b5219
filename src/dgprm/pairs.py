"""Pareto preference pairs for step-wise DPO (METHOD.md §3).

For each prefix (a question and the steps so far): take ``n`` candidate next
steps (sampled from a policy LLM, or read from a file), score every candidate
on one common criterion set — the union of the criteria dynamic selection
picks for any of them — and pair each Pareto-optimal candidate with every
candidate it dominates. Lines are written in TRL's DPO format.

Example (see tests/test_pairs.py for a runnable version with test doubles):
    >>> scored = await score_prefix(scorer, prefix, ["x = 2", "x = 3"])  # doctest: +SKIP
    >>> dpo_rows(scored)[0]["prompt"]                                    # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dgprm.config import PairsConfig, RuntimeConfig, ScoringConfig
from dgprm.errors import InputError
from dgprm.files import DPO_PAIRS, SCORED_PREFIXES, check_output_file, write_jsonl
from dgprm.llm import make_client
from dgprm.llm.base import LLMFailure
from dgprm.llm.client import LLMClient
from dgprm.pareto import preference_pairs
from dgprm.progress import Progress, counted
from dgprm.prompts import load_template
from dgprm.records import CandidateSet, Prefix, iter_json_lines, read_records, records_from
from dgprm.runs import RunStats, run_resumable
from dgprm.scoring.scorer import StepScorer
from dgprm.text import number_steps
from dgprm.tree.model import RewardTree

CANDIDATE_CHARS = 800


@dataclass
class ScoredPrefix:
    """Candidates of one prefix, their vectors on the common criteria, and failures."""

    id: str
    question: str
    steps: list[str]
    candidates: list[str]
    criteria: list[str] = field(default_factory=list)
    vectors: list[list[float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pairs: list[tuple[int, int, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prompt_text(question: str, steps: list[str]) -> str:
    """The DPO prompt: the question and the shared prefix steps, one per line.

    Example:
        >>> prompt_text("What is 2+3?", ["2+3 = 5"])
        'What is 2+3?\\nStep 1: 2+3 = 5\\nStep 2:'
    """
    return "\n".join(
        [question.strip(), *([number_steps(steps)] if steps else []), f"Step {len(steps) + 1}:"]
    )


def clean_candidate(text: str) -> str:
    """One step from a policy's answer: the first paragraph, without a "Step N:" label.

    Example:
        >>> clean_candidate("Step 3: x = 4.\\n\\nStep 4: so y = 2.")
        'x = 4.'
    """
    first = text.strip().split("\n\n", 1)[0].strip()
    if first.lower().startswith("step "):
        head, sep, rest = first.partition(":")
        if sep and head[5:].strip().isdigit():
            first = rest.strip()
    return first[:CANDIDATE_CHARS]


async def sample_candidates(
    policy: LLMClient, prefix: Prefix, n: int, *, temperature: float, seed: int
) -> tuple[list[str], list[str]]:
    """``n`` sampled next steps (distinct seeds; duplicates and blanks dropped) and errors."""
    template = load_template("next_step")
    steps = number_steps(prefix.steps)

    async def one(j: int) -> str | LLMFailure:
        request = template.render(
            max_tokens=160,
            temperature=temperature,
            seed=seed + j,
            question=prefix.question,
            steps=steps or "(none yet)",
            number=str(len(prefix.steps) + 1),
        )
        completion = await policy.generate(request, stage="policy")
        if isinstance(completion, LLMFailure):  # an error record, never a candidate
            return completion
        return clean_candidate(completion.text)

    answers = await asyncio.gather(*(one(j) for j in range(n)))
    errors = [f"policy: {a.reason}" for a in answers if isinstance(a, LLMFailure)]
    unique = list(dict.fromkeys(a for a in answers if isinstance(a, str) and a))
    return unique, errors


async def score_prefix(scorer: StepScorer, prefix: Prefix, candidates: list[str]) -> ScoredPrefix:
    """Score every candidate on the union of the criteria selected for any of them."""
    scored = ScoredPrefix(prefix.id, prefix.question, list(prefix.steps), list(candidates))
    t = len(prefix.steps)
    continuations = [[*prefix.steps, c] for c in candidates]
    selections = await asyncio.gather(
        *(scorer.select_criteria(prefix.question, s, t) for s in continuations)
    )
    chosen: set[str] = set()
    for selection in selections:
        if isinstance(selection, LLMFailure):
            scored.errors.append(f"{selection.stage}: {selection.reason}")
        else:
            chosen.update(selection)
    scored.criteria = scorer.index.ordered(chosen)
    if not scored.criteria:
        return scored
    results = await asyncio.gather(
        *(scorer.score_on(prefix.question, s, t, scored.criteria) for s in continuations)
    )
    kept: list[int] = []
    for j, result in enumerate(results):
        if isinstance(result, LLMFailure):
            scored.errors.append(f"candidate {j}: {result.stage}: {result.reason}")
        else:
            kept.append(j)
            scored.vectors.append([c.score for c in result])
    scored.candidates = [candidates[j] for j in kept]
    if len(scored.vectors) >= 2:
        scored.pairs = preference_pairs(np.array(scored.vectors))
    return scored


def dpo_rows(scored: ScoredPrefix, *, conversational: bool = False) -> list[dict[str, Any]]:
    """TRL DPO lines for one prefix: ``prompt``/``chosen``/``rejected`` plus metadata.

    Example:
        >>> s = ScoredPrefix("p", "1+1?", [], ["2", "3"], ["c1"], [[1.0], [0.0]], [],
        ...                  [(0, 1, 1.0)])
        >>> row = dpo_rows(s)[0]
        >>> row["prompt"], row["chosen"], row["rejected"], row["margin"]
        ('1+1?\\nStep 1:', ' 2', ' 3', 1.0)
        >>> dpo_rows(s, conversational=True)[0]["chosen"]
        [{'role': 'assistant', 'content': '2'}]
    """
    prompt = prompt_text(scored.question, scored.steps)
    rows = []
    for chosen, rejected, margin in scored.pairs:
        row: dict[str, Any]
        if conversational:
            row = {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": scored.candidates[chosen]}],
                "rejected": [{"role": "assistant", "content": scored.candidates[rejected]}],
            }
        else:
            row = {
                "prompt": prompt,
                "chosen": " " + scored.candidates[chosen],
                "rejected": " " + scored.candidates[rejected],
            }
        row.update(
            prefix_id=scored.id,
            chosen_vector=scored.vectors[chosen],
            rejected_vector=scored.vectors[rejected],
            criteria_ids=scored.criteria,
            margin=margin,
        )
        rows.append(row)
    return rows


@dataclass
class PairsReport(RunStats):
    """What one ``dgprm pairs`` invocation scored and what the export holds."""

    candidates: int = 0
    paired_prefixes: int = 0  # prefixes with at least one pair in the export
    pairs: int = 0
    no_pair: int = 0
    too_few: int = 0
    without_candidates: int = 0  # prefixes whose id is not in the given candidates

    @property
    def prefixes(self) -> int:
        """Prefixes scored by this run."""
        return self.done

    def add(
        self, prefix: Prefix, record: dict[str, Any], candidates: dict[str, list[str]] | None
    ) -> None:
        """Count one scored prefix: its scored candidates, and whether it had none given."""
        self.candidates += len(record["vectors"])
        self.without_candidates += candidates is not None and prefix.id not in candidates

    def rows(self) -> list[tuple[str, str]]:
        sources = counted(self.paired_prefixes, "prefix", "prefixes")
        return [
            ("prefixes scored", f"{self.prefixes} ({self.earlier_note()})"),
            ("candidates scored", str(self.candidates)),
            ("pairs exported", f"{self.pairs} from {sources}"),
            ("prefixes without a pair", f"{self.no_pair} (candidates mutually non-dominated)"),
            ("prefixes with < 2 scored candidates", str(self.too_few)),
            *(
                [("prefixes missing from the candidates", str(self.without_candidates))]
                if self.without_candidates
                else []
            ),
            *self.usage_rows(self.prefixes, "prefix"),
        ]


def export_pairs(
    scored_path: str | Path,
    out: str | Path,
    ids: list[str],
    report: PairsReport,
    *,
    conversational: bool = False,
) -> None:
    """Write the DPO lines of the prefixes ``ids`` (in that order) from ``scored_path``."""
    by_id = {}
    for _, row in iter_json_lines(scored_path):
        by_id[row["id"]] = ScoredPrefix(**row)
    rows: list[dict[str, Any]] = []
    for prefix_id in ids:
        scored = by_id[prefix_id]
        if len(scored.vectors) < 2:
            report.too_few += 1
        elif not scored.pairs:
            report.no_pair += 1
        else:
            report.paired_prefixes += 1
        rows.extend(dpo_rows(scored, conversational=conversational))
    report.pairs = write_jsonl(out, rows)


async def prefix_record(
    scorer: StepScorer,
    prefix: Prefix,
    *,
    candidates: dict[str, list[str]] | None = None,
    policy: LLMClient | None = None,
    config: PairsConfig | None = None,
) -> dict[str, Any]:
    """Take the candidates of one prefix (given, or sampled from ``policy``) and score
    them (:func:`score_prefix`): the prefix's line of the scored output."""
    config = config or PairsConfig()
    errors: list[str] = []
    if candidates is not None:
        texts = list(dict.fromkeys(c.strip() for c in candidates.get(prefix.id, [])))
    else:
        assert policy is not None
        texts, errors = await sample_candidates(
            policy, prefix, config.n, temperature=config.temperature, seed=config.seed
        )
    scored = await score_prefix(scorer, prefix, texts)
    scored.errors[:0] = errors
    return scored.to_dict()


async def score_prefixes(
    scorer: StepScorer,
    prefixes: list[Prefix],
    scored_out: str | Path,
    *,
    candidates: dict[str, list[str]] | None = None,
    policy: LLMClient | None = None,
    config: PairsConfig | None = None,
    concurrency: int = 4,
    progress: Progress | None = None,
    retry_errors: bool = False,
) -> PairsReport:
    """Score the candidates of every prefix not yet in ``scored_out`` (resumable; with
    ``retry_errors``, prefixes whose record has errors are scored again).

    Candidates come from ``candidates`` (prefix id → texts) or are sampled from
    ``policy`` (``config.n`` of them at ``config.temperature``, seeds from
    ``config.seed``). Each finished prefix is appended to ``scored_out`` as one line.
    """
    config = config or PairsConfig()
    report = PairsReport()

    async def one(prefix: Prefix) -> dict[str, Any]:
        record = await prefix_record(
            scorer, prefix, candidates=candidates, policy=policy, config=config
        )
        report.add(prefix, record, candidates)
        return record

    await run_resumable(
        prefixes,
        scored_out,
        one,
        report,
        clients=[scorer.client, *([policy] if policy is not None else [])],
        concurrency=concurrency,
        progress=progress,
        stage="prefixes",
        retry_errors=retry_errors,
        kind=SCORED_PREFIXES,
    )
    return report


def scored_path(out: str | Path) -> Path:
    """Where ``dgprm pairs`` keeps the scored prefixes of the pairs file ``out``.

    Example:
        >>> scored_path("runs/dpo_pairs.jsonl").name
        'dpo_pairs.scored.jsonl'
    """
    out = Path(out)
    return out.with_name(out.stem + ".scored.jsonl")


def _candidate_sets(
    candidates: str | Path | dict[str, list[str]], prefixes: list[Prefix], runtime: RuntimeConfig
) -> dict[str, list[str]]:
    if isinstance(candidates, dict):
        given = candidates
    else:
        sets = read_records(
            candidates, CandidateSet, max_chars=runtime.max_chars, on_long=runtime.on_long
        )
        given = {c.id: c.candidates for c in sets}
    if not any(p.id in given for p in prefixes):
        shown = ", ".join(p.id for p in prefixes[:3]) + (", …" if len(prefixes) > 3 else "")
        raise InputError(
            f"{candidates if not isinstance(candidates, dict) else 'candidates'}: no candidate "
            f"set has the id of a prefix (prefix ids: {shown})"
        )
    return given


async def amake_pairs(
    prefixes: str | Path | list[Prefix],
    out: str | Path,
    *,
    tree: str | Path | RewardTree,
    policy: str | LLMClient | None = None,
    candidates: str | Path | dict[str, list[str]] | None = None,
    llm: str | LLMClient | None = None,
    scoring: ScoringConfig | None = None,
    config: PairsConfig | None = None,
    runtime: RuntimeConfig | None = None,
    limit: int | None = None,
    retry_errors: bool = False,
    progress: Progress | None = None,
    ray: str | None = None,
    ray_workers: int | None = None,
) -> PairsReport:
    """Pareto preference pairs for DPO from scored candidate next steps of the first
    ``limit`` prefixes, written to ``out`` in TRL's format.

    Candidates are sampled from ``policy`` (an LLM spec or client) or given as
    ``candidates`` (a JSONL path or prefix id → steps). Scored prefixes are kept in
    :func:`scored_path` ``(out)``, so an interrupted run continues where it stopped.
    With ``ray`` (a Ray address, or ``"auto"``), the prefixes are scored on ``ray_workers``
    Ray workers, each with its own LLM clients (:func:`dgprm.scale.run_sharded`).
    """
    config, runtime = config or PairsConfig(), runtime or RuntimeConfig()
    inputs = [p if isinstance(p, (str, Path)) else None for p in (prefixes, candidates, tree)]
    check_output_file(out, DPO_PAIRS, inputs)
    check_output_file(scored_path(out), SCORED_PREFIXES, inputs)
    if (policy is None) == (candidates is None):
        raise InputError("give exactly one of --policy and --candidates")
    if policy is not None and (config.temperature <= 0 or config.n < 2):
        raise InputError("sampling candidates needs --temperature > 0 and --n ≥ 2")
    items = records_from(
        prefixes, Prefix, limit=limit, max_chars=runtime.max_chars, on_long=runtime.on_long
    )
    given = _candidate_sets(candidates, items, runtime) if candidates is not None else None
    scorer = StepScorer.from_tree(
        tree, llm if llm is not None else runtime.llm, config=scoring, runtime=runtime
    )
    scored = scored_path(out)
    if ray is not None:
        if isinstance(llm, LLMClient) or isinstance(policy, LLMClient):
            raise InputError("Ray workers make their own LLM clients: give LLM specs")
        await scorer.client.aclose()  # the workers' clients do the work
        report = await _score_prefixes_sharded(
            scorer.tree,
            items,
            scored,
            scoring,
            runtime.replace(llm=llm),
            config,
            policy,
            given,
            retry_errors,
            progress,
            ray,
            ray_workers,
        )
        export_pairs(
            scored, out, [p.id for p in items], report, conversational=config.conversational
        )
        return report
    policy_client = make_client(runtime.replace(llm=policy)) if isinstance(policy, str) else policy
    try:
        report = await score_prefixes(
            scorer,
            items,
            scored,
            candidates=given,
            policy=policy_client,
            config=config,
            concurrency=runtime.concurrency,
            progress=progress,
            retry_errors=retry_errors,
        )
    finally:
        if not isinstance(llm, LLMClient):
            await scorer.client.aclose()
        if isinstance(policy, str) and policy_client is not None:
            await policy_client.aclose()
    export_pairs(scored, out, [p.id for p in items], report, conversational=config.conversational)
    return report


async def _score_prefixes_sharded(
    tree: RewardTree | None,
    items: list[Prefix],
    scored: Path,
    scoring: ScoringConfig | None,
    runtime: RuntimeConfig,
    config: PairsConfig,
    policy: str | None,
    candidates: dict[str, list[str]] | None,
    retry_errors: bool,
    progress: Progress | None,
    address: str,
    workers: int | None,
) -> PairsReport:
    from dgprm.scale import run_sharded

    report = PairsReport()
    await run_sharded(
        items,
        scored,
        pairs_work,
        (tree, scoring or ScoringConfig(), runtime, config, policy, candidates),
        report,
        on_record=lambda prefix, record: report.add(prefix, record, candidates),
        address=address,
        workers=workers,
        concurrency=runtime.concurrency,
        progress=progress,
        stage="prefixes",
        retry_errors=retry_errors,
    )
    return report


def make_pairs(prefixes: str | Path | list[Prefix], out: str | Path, **options: Any) -> PairsReport:
    """Synchronous twin of :func:`amake_pairs` (same options)."""
    return asyncio.run(amake_pairs(prefixes, out, **options))


def pairs_work(
    tree: RewardTree,
    scoring: ScoringConfig,
    runtime: RuntimeConfig,
    config: PairsConfig,
    policy: str | None,
    candidates: dict[str, list[str]] | None,
) -> Callable[[Prefix], Awaitable[dict[str, Any]]]:
    """A worker's scorer and policy (own LLM clients): prefix → scored-prefix record."""
    scorer = StepScorer.from_tree(tree, runtime.llm, config=scoring, runtime=runtime)
    policy_client = make_client(runtime.replace(llm=policy)) if policy is not None else None

    async def work(prefix: Prefix) -> dict[str, Any]:
        return await prefix_record(
            scorer, prefix, candidates=candidates, policy=policy_client, config=config
        )

    return work
