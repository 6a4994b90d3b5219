"""The LLM stages of tree building: judge J, validator, summarizer."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, create_model

from dgprm.llm.base import LLMFailure
from dgprm.llm.client import LLMClient
from dgprm.llm.structured import AnswerModel, ask_structured
from dgprm.prompts import load_template
from dgprm.prompts.examples import example_criteria
from dgprm.records import PreferencePair
from dgprm.text import number_steps
from dgprm.tree.model import Criterion
from dgprm.tree.quality import GateVerdict, gate_criteria

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


async def judge_and_validate(
    pair: PreferencePair,
    client: LLMClient,
    *,
    max_criteria: int,
    seed: int = 0,
    temperature: float = 0.0,
) -> tuple[list[Criterion], list[LLMFailure]]:
    """Run J, the deterministic quality gate, then the validator on one pair (two LLM
    calls; one when the gate rejects everything the judge wrote).

    Returns every criterion the judge wrote (cleaned), each with the gate's verdict, the
    validator's verdict (``kept``) and reason, plus any failures. Only what passes the gate
    is shown to the validator; a failed validator keeps nothing from that pair:
    unvalidated criteria never enter the tree.
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
        seed=seed,
        temperature=temperature,
        where={"pair_id": pair.id},
        max_criteria=str(max_criteria),
        **values,
    )
    if isinstance(answer, LLMFailure):
        return [], [answer]
    written: list[CriterionText] = answer.criteria[:max_criteria]  # type: ignore[attr-defined]
    gate = gate_criteria(
        [(c.title, c.description) for c in written],
        question=pair.question,
        solutions=pair.chosen_steps + pair.rejected_steps,
        prompt_examples=example_criteria("judge"),
    )
    passed = [g for g in gate if g.keep]
    decided: dict[int, Verdict] = {}
    failures: list[LLMFailure] = []
    if passed:
        decided, failures = await _validate(pair, passed, values, client, seed, temperature)
    criteria = []
    shown = iter(range(len(passed)))
    for i, (text, verdict_of_gate) in enumerate(zip(written, gate, strict=True)):
        raw = f"{text.title}: {text.description}"
        cleaned = f"{verdict_of_gate.title}: {verdict_of_gate.description}"
        verdict = decided.get(next(shown)) if verdict_of_gate.keep else None
        criteria.append(
            Criterion(
                id=f"{pair.id}/{i}",
                pair_id=pair.id,
                title=verdict_of_gate.title,
                description=verdict_of_gate.description,
                kept=bool(verdict and verdict.keep),
                reason=(
                    verdict.reason.strip()
                    if verdict
                    else "validator failed"
                    if verdict_of_gate.keep
                    else "not validated: rejected by the quality gate"
                ),
                gate=None if verdict_of_gate.keep else verdict_of_gate.to_dict(),
                raw=raw if raw != cleaned else None,
            )
        )
    return criteria, failures


async def _validate(
    pair: PreferencePair,
    passed: list[GateVerdict],
    values: dict[str, str],
    client: LLMClient,
    seed: int,
    temperature: float,
) -> tuple[dict[int, Verdict], list[LLMFailure]]:
    """The validator's verdict on each criterion that passed the gate (indices as shown)."""
    listing = "\n".join(f"[{i}] {g.title}: {g.description}" for i, g in enumerate(passed))
    verdicts = await ask_structured(
        client,
        load_template("validate"),
        validator_answer(len(passed)),
        stage="validator",
        seed=seed,
        temperature=temperature,
        where={"pair_id": pair.id},
        criteria=listing,
        **values,
    )
    if isinstance(verdicts, LLMFailure):
        return {}, [verdicts]
    decided = {v.index: v for v in verdicts.verdicts}  # type: ignore[attr-defined]
    if sorted(decided) != list(range(len(passed))):
        failure = LLMFailure(
            "validator",
            f"verdict indices {sorted(decided)} do not cover 0..{len(passed) - 1}",
            None,
            {"pair_id": pair.id},
        )
        return {}, [client.fail(failure)]
    return decided, []


async def summarize_parent(
    child_texts: list[str], client: LLMClient, *, parent_id: str, seed: int = 0
) -> CriterionText | LLMFailure:
    """Write one parent criterion covering ``child_texts`` (one LLM call)."""
    return await ask_structured(
        client,
        load_template("summarize"),
        CriterionText,
        stage="summarizer",
        seed=seed,
        where={"parent_id": parent_id},
        criteria="\n".join(f"- {t}" for t in child_texts[:24]),
    )
