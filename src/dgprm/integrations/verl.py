"""dgprm as verl's custom reward function.

Point verl at this file and one of its functions::

    VERL_REWARD=$(python -c "import dgprm.integrations.verl as m; print(m.__file__)")
    custom_reward_function.path=$VERL_REWARD
    custom_reward_function.name=compute_score        # verl's default (naive) reward manager
    # or name=compute_score_batch with reward_model.reward_manager=batch (all at once)

verl loads the file by path and calls ``compute_score(data_source, solution_str,
ground_truth, extra_info=None, **kwargs)`` per response. The response is cut into steps and
scored on the reward tree; the question comes from ``extra_info[question_key]`` ("question",
as verl's own data preprocessing writes it); ``data_source`` and ``ground_truth`` are not used
by the method. The answer is verl's dict form: ``{"score": reward, "dgprm_steps",
"dgprm_failed_steps", "dgprm_fallback"}``, which verl logs.

Configuration, read once per process on the first call:

- ``DGPRM_CONFIG`` — a TOML settings file (``dgprm --config``'s format), where ``[reward]``
  names the ``tree`` and sets ``agg``, ``step_sep``, ``on_error`` and ``question_key``, and
  the usual keys set the judge (``llm``), ``concurrency``, ``cache``, ``[scoring]`` …;
- ``DGPRM_TREE``, ``DGPRM_LLM`` — the tree directory and the LLM spec, over the file;
- or the same names as keyword arguments from ``custom_reward_function.reward_kwargs``
  (``dgprm_config``, ``tree``, ``llm``) — they are read on the first call too.

A response that cannot be scored raises :class:`~dgprm.scoring.solution.ScoringError`
naming what failed, unless ``[reward] on_error`` gives the score to use (counted in
:func:`stats` and in ``dgprm_fallback``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from dgprm.config import RewardConfig, Settings
from dgprm.errors import InputError
from dgprm.integrations.loop import BackgroundLoop
from dgprm.llm.cache import Ledger
from dgprm.scoring.scorer import StepScorer
from dgprm.scoring.solution import ScoringError, SolutionScore, ascore_response

_STATE: dict[str, Any] = {}
_COUNTS = {"responses": 0, "scored": 0, "failed": 0, "fallback": 0}
_LOOP = BackgroundLoop()


def configure(scorer: StepScorer, config: RewardConfig | None = None) -> None:
    """Score with ``scorer`` and ``config`` instead of reading the configuration (for a
    program that builds its own scorer, or a test).

    Example:
        >>> import json
        >>> from dgprm.config import ScoringConfig
        >>> from dgprm.llm import Completion, LLMClient
        >>> class Judge:  # a stand-in judge: every step scores 8 of 9
        ...     model_id = "judge"
        ...     async def complete(self, request):
        ...         return Completion(json.dumps({"scores": {"critic": 8}}))
        ...     async def aclose(self): ...
        >>> configure(StepScorer(None, LLMClient(Judge()), None, ScoringConfig(mode="no-tree")))
        >>> compute_score("gsm8k", "2+3 = 5.\\nSo 5.", "5", {"question": "What is 2+3?"})
        {'score': 0.888889, 'dgprm_steps': 2.0, 'dgprm_failed_steps': 0.0, 'dgprm_fallback': 0.0}
    """
    _STATE.clear()
    _STATE.update(scorer=scorer, config=config or RewardConfig())


def _settings(kwargs: dict[str, Any]) -> Settings:
    path = kwargs.get("dgprm_config") or os.environ.get("DGPRM_CONFIG")
    return Settings.load(
        path,
        reward={"tree": kwargs.get("tree") or os.environ.get("DGPRM_TREE")},
        runtime={"llm": kwargs.get("llm") or os.environ.get("DGPRM_LLM")},
    )


def _configured(kwargs: dict[str, Any]) -> tuple[StepScorer, RewardConfig]:
    if not _STATE:
        settings = _settings(kwargs)
        tree = settings.reward.tree
        if tree is None and settings.scoring.mode != "no-tree":
            raise InputError(
                "dgprm's verl reward needs a reward tree: set DGPRM_TREE, or [reward] tree in "
                "the DGPRM_CONFIG file"
            )
        scorer = StepScorer.from_tree(
            tree if settings.scoring.mode != "no-tree" else None,
            settings.runtime.llm,
            config=settings.scoring,
            runtime=settings.runtime,
        )
        _STATE.update(scorer=scorer, config=settings.reward)
    return _STATE["scorer"], _STATE["config"]


def stats() -> dict[str, int]:
    """Responses seen by this process, and how many were scored, failed or got the fallback."""
    return dict(_COUNTS)


async def _one(
    scorer: StepScorer, config: RewardConfig, solution: str, extra_info: Any
) -> SolutionScore:
    question = extra_info.get(config.question_key) if isinstance(extra_info, dict) else None
    if not isinstance(question, str) or not question.strip():
        reason = f"extra_info has no question under {config.question_key!r} (set question_key)"
        return SolutionScore([], config.on_error, reason, "input", config.on_error is not None)
    return await ascore_response(scorer, question, solution, config)


def _count(result: SolutionScore) -> None:
    _COUNTS["responses"] += 1
    _COUNTS["scored" if result.ok else "fallback" if result.fallback else "failed"] += 1


def _answer(result: SolutionScore) -> dict[str, float]:
    assert result.reward is not None
    return {
        "score": result.reward,
        "dgprm_steps": float(len(result.steps)),
        "dgprm_failed_steps": float(result.failed_steps),
        "dgprm_fallback": float(result.fallback),
    }


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """verl's per-response reward (see the module docstring)."""
    scorer, config = _configured(kwargs)
    result = _LOOP.run(_one(scorer, config, solution_str, extra_info))
    _count(result)
    if result.reward is None:
        raise ScoringError(f"dgprm could not score the response: {result.error}")
    return _answer(result)


def compute_score_batch(
    data_sources: list[Any],
    solution_strs: list[str],
    ground_truths: list[Any],
    extra_infos: list[dict[str, Any] | None],
    **kwargs: Any,
) -> list[dict[str, float]]:
    """verl's batch reward manager entry point: every response scored concurrently."""
    scorer, config = _configured(kwargs)

    async def every() -> list[SolutionScore]:
        jobs = (_one(scorer, config, s, e) for s, e in zip(solution_strs, extra_infos, strict=True))
        return list(await asyncio.gather(*jobs))

    results = _LOOP.run(every())
    for result in results:
        _count(result)
    failed = [(i, r) for i, r in enumerate(results) if r.reward is None]
    if failed:
        i, first = failed[0]
        more = f" ({len(failed)} of {len(results)} failed)" if len(failed) > 1 else ""
        raise ScoringError(f"dgprm could not score response {i}: {first.error}{more}")
    return [_answer(r) for r in results]


def usage() -> Ledger:
    """The LLM usage of this process's scorer so far (calls, cache hits, tokens, errors)."""
    return _STATE["scorer"].client.ledger.copy() if _STATE else Ledger()
