"""The reward server: one FastAPI app over one :class:`~dgprm.scoring.StepScorer`.

Every request shares the scorer's LLM client, hence its response cache, its concurrency
bound and its ledger. Endpoints:

- ``POST /v1/score`` — ``{"question", "steps"}`` or ``{"items": [...]}``; answers the
  records ``dgprm score`` writes (criteria, vector, reward, label per step; usage; errors),
  plus the solution's ``solution_reward`` and ``fallback``;
- ``POST /get_reward`` — OpenRLHF's remote reward model: ``{"query": [...], "prompts"?,
  "labels"?}`` → ``{"rewards", "scores", "extra_logs"}``;
- ``GET /health``, ``GET /v1/tree`` (the tree and models), ``GET /metrics`` (Prometheus).

Errors are ``{"error": "<one line>"}``: 401 for a missing or wrong bearer key (when a key is
configured; ``/health`` needs none), 413 for a body over the size limit, 422 for a body that
is not what the endpoint takes, 502 when scoring failed (an LLM call or its answer) and no
fallback reward was configured, 500 for a bug. The key is compared in constant time and is
never logged or echoed.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dgprm.config import RewardConfig, RuntimeConfig, ServeConfig
from dgprm.errors import InputError
from dgprm.llm.client import validation_message
from dgprm.records import limit_lengths
from dgprm.scoring.batch import trajectory_record
from dgprm.scoring.scorer import StepScorer
from dgprm.scoring.solution import SolutionScore, ascore_steps
from dgprm.serve.metrics import ServeMetrics
from dgprm.text import split_query, split_steps
from dgprm.version import __version__

log = logging.getLogger("dgprm.serve")
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class Problem(Exception):
    """An answer other than 200: a status and a one-line reason (plus optional fields)."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        fields: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = " ".join(reason.split())  # one line
        self.fields = fields or {}
        self.headers = headers

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.reason, **self.fields}, status_code=self.status, headers=self.headers
        )


# ---- request bodies --------------------------------------------------------------------


class ScoreItem(BaseModel):
    """One solution for ``/v1/score``: steps as a list, or one text cut into steps."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    question: str
    steps: list[str] | str


class ScoreBatch(BaseModel):
    """Several solutions for ``/v1/score``."""

    model_config = ConfigDict(extra="forbid")

    items: list[ScoreItem] = Field(min_length=1)


class RewardRequest(BaseModel):
    """OpenRLHF's remote reward request; ``query`` is prompt + response, ``labels`` unused."""

    model_config = ConfigDict(extra="ignore")

    query: list[str] = Field(min_length=1)
    prompts: list[str] | None = None
    labels: list[Any] | None = None

    @model_validator(mode="after")
    def _aligned(self) -> RewardRequest:
        for name in ("prompts", "labels"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.query):
                raise ValueError(
                    f"{name} has {len(values)} entries but query has {len(self.query)}"
                )
        return self


def _validated(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise Problem(422, validation_message(exc)) from None


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object; 413 past ``limit`` bytes, 422 for anything not an object."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(422, "bad Content-Length header")
        if int(declared) > limit:
            raise Problem(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except json.JSONDecodeError as exc:
        raise Problem(422, f"body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except UnicodeDecodeError:
        raise Problem(422, "body is not valid UTF-8") from None
    if not isinstance(body, dict):
        raise Problem(422, "body must be a JSON object")
    return body


def _api_key(env: str | None) -> bytes | None:
    if env is None:
        return None
    value = os.environ.get(env, "")
    if not value:
        raise InputError(f"--api-key-env {env}: that environment variable is not set or empty")
    return value.encode("utf-8")


def _check_key(request: Request, key: bytes) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "missing bearer key", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(token.strip().encode("utf-8"), key):
        raise Problem(401, "wrong bearer key", headers={"WWW-Authenticate": "Bearer"})


def tree_summary(scorer: StepScorer, reward: RewardConfig) -> dict[str, Any]:
    """What ``GET /v1/tree`` answers: the tree's criteria, the models and the settings.

    Example (no tree in the no-tree ablation):
        >>> from dgprm.config import ScoringConfig
        >>> from dgprm.llm import LLMClient
        >>> class Judge:
        ...     model_id = "judge"
        >>> scorer = StepScorer(None, LLMClient(Judge()), None, ScoringConfig(mode="no-tree"))
        >>> summary = tree_summary(scorer, RewardConfig())
        >>> summary["llm"], summary["tree"], summary["reward"]["agg"]
        ('judge', None, 'min')
    """
    tree = scorer.tree
    summary: dict[str, Any] | None = None
    if tree is not None:
        summary = {
            "parents": len(tree.parents),
            "children": len(tree.children),
            "criteria": len(tree.kept_criteria),
            "embedder": tree.embedder,
            "built_with": tree.manifest.get("llm"),
            "dgprm_version": tree.manifest.get("dgprm_version"),
            "nodes": [{"id": p.id, "text": p.text, "children": p.children} for p in tree.parents],
        }
    return {
        "dgprm": __version__,
        "llm": scorer.client.model_id,
        "embedder": scorer.embedder.model_id if scorer.embedder is not None else None,
        "concurrency": scorer.client.concurrency,
        "tree": summary,
        "scoring": scorer.config.model_dump(),
        "reward": reward.model_dump(),
    }


def _failed_input(error: str, reward: RewardConfig) -> SolutionScore:
    return SolutionScore([], reward.on_error, error, "input", reward.on_error is not None)


def _summary(errors: list[str], total: int, noun: str) -> str:
    more = f" ({len(errors)} of {total} {noun} failed)" if len(errors) > 1 else ""
    return f"{errors[0]}{more}"


def create_app(
    scorer: StepScorer,
    config: ServeConfig | None = None,
    reward: RewardConfig | None = None,
    *,
    runtime: RuntimeConfig | None = None,
) -> FastAPI:
    """The reward server over an already built ``scorer`` (its client is shared by every
    request). ``config`` sets the key, body limit and logging; ``reward`` the aggregation,
    step separator and fallback; ``runtime`` the longest accepted text.

    Example:
        >>> from dgprm.config import ScoringConfig
        >>> from dgprm.llm import LLMClient
        >>> class Judge:
        ...     model_id = "judge"
        >>> scorer = StepScorer(None, LLMClient(Judge()), None, ScoringConfig(mode="no-tree"))
        >>> app = create_app(scorer)
        >>> sorted(r.path for r in app.routes if r.name.startswith("/"))
        ['/get_reward', '/health', '/metrics', '/v1/score', '/v1/tree']
    """
    config, reward, runtime = (
        config or ServeConfig(),
        reward or RewardConfig(),
        runtime or RuntimeConfig(),
    )
    key = _api_key(config.api_key_env)
    metrics = ServeMetrics(concurrency=scorer.client.concurrency)
    app = FastAPI(title="dgprm reward server", version=__version__)
    app.state.scorer, app.state.metrics, app.state.reward = scorer, metrics, reward

    def route(
        path: str, handler: Callable[[Request], Awaitable[Response]], method: str, auth: bool
    ) -> None:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            metrics.in_flight += 1
            try:
                if auth and key is not None:
                    _check_key(request, key)
                response = await handler(request)
            except Problem as problem:
                if problem.status >= 500:
                    log.warning("%s %s: %d: %s", method, path, problem.status, problem.reason)
                response = problem.response()
            except Exception as exc:  # a bug: answered in one line, logged with its traceback
                log.exception("%s %s failed", method, path)
                response = Problem(500, f"internal error: {type(exc).__name__}: {exc}").response()
            finally:
                metrics.in_flight -= 1
            metrics.request(path, response.status_code, time.perf_counter() - started)
            return response

        app.add_api_route(path, endpoint, methods=[method], name=path)

    async def body_of(request: Request) -> dict[str, Any]:
        body = await read_json(request, config.max_body_bytes)
        try:
            return limit_lengths(
                body, max_chars=runtime.max_chars, on_long=runtime.on_long, where="body"
            )
        except InputError as exc:
            raise Problem(422, str(exc)) from None

    async def score(prepared: list[tuple[str, list[str]] | str]) -> list[SolutionScore]:
        async def one(job: tuple[str, list[str]] | str) -> SolutionScore:
            if isinstance(job, str):
                return _failed_input(job, reward)
            question, steps = job
            return await ascore_steps(
                scorer, question, steps, agg=reward.agg, on_error=reward.on_error
            )

        return list(await asyncio.gather(*(one(job) for job in prepared)))

    def count(path: str, results: list[SolutionScore]) -> None:
        for r in results:
            outcome = "ok" if r.ok else "fallback" if r.fallback else "failed"
            metrics.items(
                path,
                outcome,
                steps=len(r.steps),
                step_errors=sum(s.error is not None for s in r.steps),
            )

    def refuse_inputs(path: str, prepared: list[Any], noun: str) -> None:
        errors = [job for job in prepared if isinstance(job, str)]
        if errors and reward.on_error is None:  # nothing is scored for a request refused
            metrics.items(path, "failed", len(errors))
            raise Problem(422, _summary(errors, len(prepared), noun))

    def failures(results: list[SolutionScore], label: str, noun: str) -> str | None:
        errors = [f"{label} {i}: {r.error}" for i, r in enumerate(results) if not r.ok]
        if not errors or reward.on_error is not None:
            return None
        return _summary(errors, len(results), noun)

    async def post_score(request: Request) -> Response:
        body = await body_of(request)
        single = "items" not in body
        items = [_validated(ScoreItem, body)] if single else _validated(ScoreBatch, body).items
        if len(items) > config.max_items:
            raise Problem(422, f"{len(items)} items exceed the limit of {config.max_items}")
        prepared: list[tuple[str, list[str]] | str] = []
        for i, item in enumerate(items):
            steps = (
                split_steps(item.steps, reward.step_sep)
                if isinstance(item.steps, str)
                else item.steps
            )
            blank = [t for t, step in enumerate(steps) if not step.strip()]
            if not item.question.strip():
                prepared.append(f"item {i}: the question is empty")
            elif not steps:
                prepared.append(f"item {i}: no steps")
            elif blank:
                prepared.append(f"item {i}: step {blank[0]} is empty")
            else:
                prepared.append((item.question, steps))
        refuse_inputs("/v1/score", prepared, "items")
        results = await score(prepared)
        count("/v1/score", results)
        records = []
        for i, (item, result) in enumerate(zip(items, results, strict=True)):
            record = trajectory_record(item.id or str(i), result.steps, result.usage)
            if not result.steps and result.error:
                record["errors"] = [{"step": None, "reason": result.error}]
            record.update(solution_reward=result.reward, fallback=result.fallback)
            records.append(record)
        answer: dict[str, Any] = records[0] if single else {"items": records}
        failed = failures(results, "item", "items")
        if failed is not None:
            raise Problem(502, failed, fields=answer)
        return JSONResponse(answer)

    async def get_reward(request: Request) -> Response:
        req: RewardRequest = _validated(RewardRequest, await body_of(request))
        if len(req.query) > config.max_items:
            raise Problem(422, f"{len(req.query)} queries exceed the limit of {config.max_items}")
        prompts = req.prompts or [None] * len(req.query)
        prepared: list[tuple[str, list[str]] | str] = []
        for i, (query, prompt) in enumerate(zip(req.query, prompts, strict=True)):
            try:
                question, response = split_query(query, prompt)
            except ValueError as exc:
                prepared.append(f"query {i}: {exc}")
                continue
            steps = split_steps(response, reward.step_sep)
            if not question:
                prepared.append(f"query {i}: the question (prompt) is empty")
            elif not steps:
                prepared.append(f"query {i}: the response has no steps")
            else:
                prepared.append((question, steps))
        refuse_inputs("/get_reward", prepared, "queries")
        results = await score(prepared)
        count("/get_reward", results)
        failed = failures(results, "query", "queries")
        if failed is not None:
            raise Problem(502, failed)
        rewards = [r.reward for r in results]
        return JSONResponse(
            {
                "rewards": rewards,
                "scores": rewards,
                "extra_logs": {
                    "dgprm_steps": [float(len(r.steps)) for r in results],
                    "dgprm_failed_steps": [float(r.failed_steps) for r in results],
                    "dgprm_fallback": [float(r.fallback) for r in results],
                    "dgprm_llm_calls": [float(r.usage.llm_calls) for r in results],
                    "dgprm_cache_hits": [float(r.usage.cache_hits) for r in results],
                },
            }
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "dgprm": __version__})

    async def tree(request: Request) -> Response:
        return JSONResponse(tree_summary(scorer, reward))

    async def prometheus(request: Request) -> Response:
        return PlainTextResponse(metrics.render(scorer.client.ledger), media_type=PROMETHEUS_TEXT)

    route("/v1/score", post_score, "POST", auth=True)
    route("/get_reward", get_reward, "POST", auth=True)
    route("/health", health, "GET", auth=False)
    route("/v1/tree", tree, "GET", auth=True)
    route("/metrics", prometheus, "GET", auth=True)
    return app
