"""dgprm as a reward function for TRL's ``GRPOTrainer`` (``reward_funcs=[...]``).

TRL calls a reward function as ``f(prompts=..., completions=..., completion_ids=...,
**columns)`` and takes one float per completion, or ``None`` for a completion the function
does not score (TRL leaves it out of that completion's reward). :class:`DGPRMReward` does
exactly that; :class:`AsyncDGPRMReward` is the same as a coroutine, which TRL runs
concurrently with its other async reward functions. Both accept the plain format (strings)
and the conversational one (lists of ``{"role", "content"}`` messages): the question is the
prompt (its last user message), the completion is cut into steps
(:func:`dgprm.text.split_steps`), and the reward is the aggregate of the step rewards
(``config.agg``, min by default).

A completion whose scoring failed gets ``None`` (or ``config.on_error`` when set); both are
counted in :attr:`DGPRMReward.counts` and reported to TRL's logs through its ``log_metric``
hook as ``<name>/failed`` and ``<name>/fallback`` (fractions of the batch).

Example:
    >>> from dgprm.integrations.trl import DGPRMReward
    >>> judge = "openai:http://localhost:8000/v1#qwen"
    >>> reward = DGPRMReward.from_tree("runs/tree", llm=judge)  # doctest: +SKIP
    >>> GRPOTrainer(model=..., reward_funcs=[reward], train_dataset=...)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path
from typing import Any

from dgprm.config import RewardConfig, RuntimeConfig, ScoringConfig
from dgprm.integrations.loop import BackgroundLoop
from dgprm.llm.client import LLMClient
from dgprm.scoring.scorer import StepScorer
from dgprm.scoring.solution import SolutionScore, ascore_response
from dgprm.tree.model import RewardTree

Message = dict[str, Any]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def question_of(prompt: str | list[Message]) -> str:
    """The question of a TRL prompt: the text itself, or the last user message.

    Example:
        >>> question_of("What is 2+3?")
        'What is 2+3?'
        >>> question_of([{"role": "system", "content": "Be brief."},
        ...              {"role": "user", "content": "What is 2+3?"}])
        'What is 2+3?'
    """
    if isinstance(prompt, str):
        return prompt
    users = [m for m in prompt if m.get("role") == "user"]
    return _text((users or prompt)[-1].get("content", "")) if prompt else ""


def response_of(completion: str | list[Message]) -> str:
    """The text of a TRL completion: the text itself, or its assistant messages joined.

    Example:
        >>> response_of([{"role": "assistant", "content": "2+3 = 5."}])
        '2+3 = 5.'
    """
    if isinstance(completion, str):
        return completion
    return "\n\n".join(_text(m.get("content")) for m in completion if m.get("role") == "assistant")


class DGPRMReward:
    """A TRL reward function: ``reward(prompts, completions, completion_ids=None, **kwargs)
    -> list[float | None]`` (see the module docstring).

    ``__name__`` (``name``, "dgprm" by default) is what TRL's logs call it
    (``rewards/dgprm/mean``). Every call shares the scorer's LLM client; synchronous calls run
    on one background event loop.

    Example (a stand-in judge that gives every step 8 of 9, on the no-tree critic):
        >>> import json
        >>> from dgprm.llm import Completion, LLMClient
        >>> class Judge:
        ...     model_id = "judge"
        ...     async def complete(self, request):
        ...         return Completion(json.dumps({"scores": {"critic": 8}}))
        ...     async def aclose(self): ...
        >>> scorer = StepScorer(None, LLMClient(Judge()), None, ScoringConfig(mode="no-tree"))
        >>> reward = DGPRMReward(scorer)
        >>> reward(prompts=["What is 2+3?", "1+1?"], completions=["2+3 = 5.\\nSo 5.", "  "])
        [0.888889, None]
        >>> reward.__name__, reward.counts
        ('dgprm', {'completions': 2, 'scored': 1, 'failed': 1, 'fallback': 0})
    """

    def __init__(
        self, scorer: StepScorer, config: RewardConfig | None = None, *, name: str = "dgprm"
    ) -> None:
        self.scorer = scorer
        self.config = config or RewardConfig()
        self.__name__ = name
        self.counts = {"completions": 0, "scored": 0, "failed": 0, "fallback": 0}
        #: the reasons of the latest failures (at most 100), for inspection
        self.errors: deque[str] = deque(maxlen=100)
        self._loop = BackgroundLoop()

    @classmethod
    def from_tree(
        cls,
        tree: str | Path | RewardTree | None,
        llm: str | LLMClient = "embedded",
        *,
        config: RewardConfig | None = None,
        scoring: ScoringConfig | None = None,
        runtime: RuntimeConfig | None = None,
        name: str = "dgprm",
    ) -> DGPRMReward:
        """A reward function over a saved tree (see :meth:`StepScorer.from_tree`)."""
        scorer = StepScorer.from_tree(tree, llm, config=scoring, runtime=runtime)
        return cls(scorer, config, name=name)

    def _count(self, results: list[SolutionScore], kwargs: dict[str, Any]) -> list[float | None]:
        for r in results:
            self.counts["completions"] += 1
            self.counts["scored" if r.ok else "fallback" if r.fallback else "failed"] += 1
            if not r.ok:
                self.errors.append(str(r.error))
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and results:
            failed = sum(not r.ok and not r.fallback for r in results)
            log_metric(f"{self.__name__}/failed", failed / len(results))
            log_metric(f"{self.__name__}/fallback", sum(r.fallback for r in results) / len(results))
        return [r.reward for r in results]

    async def ascore(
        self, prompts: list[Any], completions: list[Any], **kwargs: Any
    ) -> list[float | None]:
        """The rewards of ``completions`` (one per prompt), scored concurrently."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        results = await asyncio.gather(
            *(
                ascore_response(self.scorer, question_of(p), response_of(c), self.config)
                for p, c in zip(prompts, completions, strict=True)
            )
        )
        return self._count(list(results), kwargs)

    def __call__(
        self,
        prompts: list[Any],
        completions: list[Any],
        completion_ids: list[list[int]] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        return self._loop.run(self.ascore(prompts, completions, **kwargs))

    def close(self) -> None:
        """Stop the background loop and close the LLM client."""
        self._loop.run(self.scorer.client.aclose())
        self._loop.close()


class AsyncDGPRMReward(DGPRMReward):
    """:class:`DGPRMReward` as a coroutine function: TRL awaits it on its own event loop,
    concurrently with its other async reward functions.

    Example:
        >>> import inspect
        >>> inspect.iscoroutinefunction(AsyncDGPRMReward.__call__)
        True
    """

    async def __call__(  # type: ignore[override]
        self,
        prompts: list[Any],
        completions: list[Any],
        completion_ids: list[list[int]] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        return await self.ascore(prompts, completions, **kwargs)
