"""The LLM stages of tree building: judge J, validator, summarizer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from dgprm.llm import LLMClient, LLMFailure
from dgprm.prompts import load_template
from dgprm.records import PreferencePair
from dgprm.tree.model import Criterion

TITLE_CHARS = 60
DESCRIPTION_CHARS = 200
REASON_CHARS = 160


class CriterionText(BaseModel):
    title: str = Field(min_length=3)
    description: str = Field(min_length=3)


class JudgeAnswer(BaseModel):
    criteria: list[CriterionText] = Field(min_length=1)


class Verdict(BaseModel):
    index: int
    keep: bool
    reason: str = ""


class ValidatorAnswer(BaseModel):
    verdicts: list[Verdict]


def criterion_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 3, "maxLength": TITLE_CHARS},
            "description": {"type": "string", "minLength": 3, "maxLength": DESCRIPTION_CHARS},
        },
        "required": ["title", "description"],
    }


def judge_schema(max_criteria: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "criteria": {
                "type": "array",
                "items": criterion_schema(),
                "minItems": 1,
                "maxItems": max_criteria,
            }
        },
        "required": ["criteria"],
    }


def validator_schema(count: int) -> dict[str, Any]:
    verdict = {
        "type": "object",
        "properties": {
            "index": {"type": "integer", "minimum": 0, "maximum": count - 1},
            "keep": {"type": "boolean"},
            "reason": {"type": "string", "maxLength": REASON_CHARS},
        },
        "required": ["index", "keep", "reason"],
    }
    return {
        "type": "object",
        "properties": {
            "verdicts": {"type": "array", "items": verdict, "minItems": count, "maxItems": count}
        },
        "required": ["verdicts"],
    }


def number_steps(steps: list[str]) -> str:
    """Render steps as ``Step 1: ...`` lines.

    Example:
        >>> number_steps(["a", "b"])
        'Step 1: a\\nStep 2: b'
    """
    return "\n".join(f"Step {i}: {s.strip()}" for i, s in enumerate(steps, start=1))


def _tokens_for(count: int, per_item: int) -> int:
    return 32 + count * per_item


async def judge_and_validate(
    pair: PreferencePair,
    client: LLMClient,
    *,
    max_criteria: int,
    seed: int = 0,
    temperature: float = 0.0,
) -> tuple[list[Criterion], list[LLMFailure]]:
    """Run J then the validator on one pair (two LLM calls).

    Returns every criterion the judge wrote, each with the validator's verdict
    (``kept``) and reason, plus any failures. A failed validator keeps nothing
    from that pair: unvalidated criteria never enter the tree.
    """
    values = {
        "question": pair.question.strip(),
        "chosen": number_steps(pair.chosen_steps),
        "rejected": number_steps(pair.rejected_steps),
    }
    judge = load_template("judge").render(
        schema=judge_schema(max_criteria),
        seed=seed,
        temperature=temperature,
        max_tokens=_tokens_for(max_criteria, TITLE_CHARS + DESCRIPTION_CHARS + 30),
        max_criteria=str(max_criteria),
        **values,
    )
    answer = await client.ask(judge, JudgeAnswer, stage="judge", pair_id=pair.id)
    if isinstance(answer, LLMFailure):
        return [], [answer]
    written = answer.criteria[:max_criteria]
    listing = "\n".join(f"[{i}] {c.title}: {c.description}" for i, c in enumerate(written))
    validate = load_template("validate").render(
        schema=validator_schema(len(written)),
        seed=seed,
        temperature=temperature,
        max_tokens=_tokens_for(len(written), REASON_CHARS + 30),
        criteria=listing,
        **values,
    )
    verdicts = await client.ask(validate, ValidatorAnswer, stage="validator", pair_id=pair.id)
    failures: list[LLMFailure] = []
    decided: dict[int, Verdict] = {}
    if isinstance(verdicts, LLMFailure):
        failures.append(verdicts)
    else:
        decided = {v.index: v for v in verdicts.verdicts}
        if sorted(decided) != list(range(len(written))):
            failures.append(
                client.fail(
                    LLMFailure(
                        "validator",
                        f"verdict indices {sorted(decided)} do not cover 0..{len(written) - 1}",
                        None,
                        {"pair_id": pair.id},
                    )
                )
            )
            decided = {}
    criteria = []
    for i, text in enumerate(written):
        verdict = decided.get(i)
        criteria.append(
            Criterion(
                id=f"{pair.id}/{i}",
                pair_id=pair.id,
                title=text.title.strip(),
                description=text.description.strip(),
                kept=bool(verdict and verdict.keep),
                reason=verdict.reason.strip() if verdict else "validator failed",
            )
        )
    return criteria, failures


async def summarize_parent(
    child_texts: list[str], client: LLMClient, *, parent_id: str, seed: int = 0
) -> CriterionText | LLMFailure:
    """Write one parent criterion covering ``child_texts`` (one LLM call)."""
    listing = "\n".join(f"- {t}" for t in child_texts[:24])
    request = load_template("summarize").render(
        schema=criterion_schema(),
        seed=seed,
        max_tokens=TITLE_CHARS + DESCRIPTION_CHARS + 40,
        criteria=listing,
    )
    return await client.ask(request, CriterionText, stage="summarizer", parent_id=parent_id)
