"""The LLM stages of tree building: judge J, validator, summarizer."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, create_model

from dgprm.llm.base import LLMFailure
from dgprm.llm.client import LLMClient
from dgprm.llm.structured import AnswerModel, ask_structured
from dgprm.prompts import load_template
from dgprm.records import PreferencePair
from dgprm.text import number_steps
from dgprm.tree.model import Criterion

TITLE_CHARS = 60
DESCRIPTION_CHARS = 200
REASON_CHARS = 160


class CriterionText(AnswerModel):
    """A criterion as the judge and the summarizer write it."""

    title: Annotated[str, Field(min_length=3, max_length=TITLE_CHARS)]
    description: Annotated[str, Field(min_length=3, max_length=DESCRIPTION_CHARS)]


def judge_answer(max_criteria: int) -> type[AnswerModel]:
    """J's answer model: one to ``max_criteria`` criteria."""
    criteria = (list[CriterionText], Field(min_length=1, max_length=max_criteria))
    return create_model("JudgeAnswer", __base__=AnswerModel, criteria=criteria)


class Verdict(AnswerModel):
    index: int
    keep: bool
    reason: Annotated[str, Field(max_length=REASON_CHARS)]


def validator_answer(count: int) -> type[AnswerModel]:
    """The validator's answer model: one verdict per criterion index 0..count-1."""
    verdict = create_model("Verdict", __base__=Verdict, index=(int, Field(ge=0, le=count - 1)))
    verdicts = (list[verdict], Field(min_length=count, max_length=count))  # type: ignore[valid-type]
    return create_model("ValidatorAnswer", __base__=AnswerModel, verdicts=verdicts)


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
    answer = await ask_structured(
        client,
        load_template("judge"),
        judge_answer(max_criteria),
        stage="judge",
        max_tokens=_tokens_for(max_criteria, TITLE_CHARS + DESCRIPTION_CHARS + 30),
        seed=seed,
        temperature=temperature,
        where={"pair_id": pair.id},
        max_criteria=str(max_criteria),
        **values,
    )
    if isinstance(answer, LLMFailure):
        return [], [answer]
    written: list[CriterionText] = answer.criteria[:max_criteria]  # type: ignore[attr-defined]
    listing = "\n".join(f"[{i}] {c.title}: {c.description}" for i, c in enumerate(written))
    verdicts = await ask_structured(
        client,
        load_template("validate"),
        validator_answer(len(written)),
        stage="validator",
        max_tokens=_tokens_for(len(written), REASON_CHARS + 30),
        seed=seed,
        temperature=temperature,
        where={"pair_id": pair.id},
        criteria=listing,
        **values,
    )
    failures: list[LLMFailure] = []
    decided: dict[int, Verdict] = {}
    if isinstance(verdicts, LLMFailure):
        failures.append(verdicts)
    else:
        decided = {v.index: v for v in verdicts.verdicts}  # type: ignore[attr-defined]
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
    return await ask_structured(
        client,
        load_template("summarize"),
        CriterionText,
        stage="summarizer",
        max_tokens=TITLE_CHARS + DESCRIPTION_CHARS + 40,
        seed=seed,
        where={"parent_id": parent_id},
        criteria="\n".join(f"- {t}" for t in child_texts[:24]),
    )
