"""The deterministic criterion gate: each rule rejects the bad and keeps the good."""

from __future__ import annotations

import pytest

from dgprm.prompts.examples import example_criteria, example_texts
from dgprm.tree.quality import (
    REASONS,
    GateVerdict,
    clean_text,
    gate_criteria,
    jaccard,
    problem_terms,
    rejection_counts,
)

PENCILS = (
    "Three pencils and a jumbo eraser cost $1.24. Five pencils and a jumbo eraser cost $1.82. "
    "No prices include tax. In cents, what is the cost of a pencil?"
)
BOOKS = (
    "Dolly has two books. Pandora has one. If both Dolly and Pandora read each others' books "
    "as well as their own, how many books will they collectively read by the end?"
)

GOOD = [
    ("Correct arithmetic", "Each calculation in the step gives the right result"),
    ("Units", "Units are consistent"),
    ("Justified claims", "Every claim follows from the given information or earlier steps"),
    ("No redundancy", "The step does not repeat work already done"),
]


def reasons(criteria: list[tuple[str, str]], question: str = PENCILS, **kw: object) -> list:
    return [v.reason for v in gate_criteria(criteria, question=question, **kw)]  # type: ignore[arg-type]


def test_good_criteria_are_kept_on_both_questions() -> None:
    assert reasons(GOOD) == [None] * len(GOOD)
    assert reasons(GOOD, BOOKS) == [None] * len(GOOD)


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("  Units   are\nconsistent.  ", "Units are consistent"),
        ('"Units are consistent"', "Units are consistent"),
        ("“Units are consistent”;", "Units are consistent"),
        ("2. Units are consistent", "Units are consistent"),
        ("1) Units are consistent", "Units are consistent"),
        ("- Units are consistent", "Units are consistent"),
        ("• Units are consistent", "Units are consistent"),
        ("Criterion 3: Units are consistent", "Units are consistent"),
        ("criterion 3 - Units are consistent", "Units are consistent"),
        ("2. Criterion 3: **Units are consistent**.", "Units are consistent"),
        ("1.2. Units are consistent!", "Units are consistent"),
        ("3.5 is not a prefix", "3.5 is not a prefix"),
        ("Étapes justifiées…", "Étapes justifiées"),
        ("「単位が一致している」。", "単位が一致している"),
        ("1.1.1.1.1.1…", "1.1.1.1.1.1"),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_verdict_carries_cleaned_text() -> None:
    [v] = gate_criteria([(' "2. Units" ', "- Units are consistent.")], question=PENCILS)
    assert (v.title, v.description, v.keep) == ("Units", "Units are consistent", True)


def test_empty_after_cleaning() -> None:
    assert reasons([("...", '""'), ("- ", "•")]) == ["empty", "empty"]


@pytest.mark.parametrize(
    "criterion",
    [
        ("1.1.1.1.1.1", "1.1.1.1.1.1.1.1"),
        ("Accuracy", "The the the step is correct"),
        ("Accuracy", "The step is correct is correct"),
        ("Accuracy", "aaaaaa calculation is right"),
        ("Accuracy ???? check", "Each calculation gives the right result"),
        ("Accuracy", "Each calculation gives the right result step step step"),
    ],
)
def test_repetition_is_rejected(criterion: tuple[str, str]) -> None:
    assert reasons([criterion]) == ["repetition"]


def test_repetition_keeps_normal_text() -> None:
    ok = [
        ("Mississippi rule", "Each step states what it assumes and what it shows"),
        ("Bookkeeping", "Intermediate results are written down before they are used"),
        ("Decimals", "Amounts such as 0.5 or 1.25 keep their decimal point"),
    ]
    assert reasons(ok, BOOKS) == [None, None, None]


@pytest.mark.parametrize(
    "criterion",
    [
        ("Step", "Step 2"),
        ("Clarity", "Clear"),
        ("x", "y = 3"),
        ("", "Correct"),
    ],
)
def test_too_few_words(criterion: tuple[str, str]) -> None:
    assert reasons([criterion]) == ["too_few_words"]


def test_short_real_criteria_pass() -> None:
    assert reasons([("Units are consistent", "Units are consistent")]) == [None]
    assert reasons([("Units", "Units are consistent")]) == [None]
    assert reasons([("Signs", "Signs are kept")]) == [None]


@pytest.mark.parametrize(
    "criterion",
    [
        ("Better", "The better solution is better"),
        ("2. Efficiency", "2. The better solution is more efficient than the worst solution"),
        ("Correctness", "The worse solution makes an arithmetic error"),
        ("Clarity", "Each step is clearer than the other solution"),
        ("Clarity", "Each step is clearer than in the rejected one"),
        ("Solution A", "Each calculation gives the right result"),
        ("Accuracy", "Response B divides where it should subtract"),
        ("Agreement", "Both solutions use the same equations"),
        ("Accuracy", "Compared with the other, the arithmetic is right"),
        ("Good", "The good solution is good"),
        ("Flaw", "The flawed solution skips a condition"),
    ],
)
def test_comparisons_between_solutions_are_rejected(criterion: tuple[str, str]) -> None:
    assert reasons([criterion]) == ["comparison"]


def test_comparison_rule_keeps_requirements() -> None:
    ok = [
        ("Final answer", "The step states the final answer in the requested unit"),
        ("Questions", "Each step helps answer a question the problem asks"),
        ("Roots", "Both solutions of a quadratic equation are checked"),
        ("Progress", "The step gets closer to the answer than the previous step"),
        ("Better estimates", "Estimates are replaced by exact values when they are known"),
    ]
    assert reasons(ok) == [None] * len(ok)


@pytest.mark.parametrize(
    "criterion, question",
    [
        (("Price", "The price of a pencil is 29 cents"), PENCILS),
        (("Cost", "The total is $1.24 for three items"), PENCILS),
        (("Eraser", "The eraser cost is found by substitution"), PENCILS),
        (("Names", "Dolly's books are counted once"), BOOKS),
        (("Names", "The books Pandora reads are counted"), BOOKS),
        (("Reading", "Each person reads every book they own"), BOOKS),
        (("Zoë", "Zoë's share is computed correctly"), "Zoë hat drei Äpfel und gibt Ben zwei."),
    ],
)
def test_copied_from_problem_is_rejected(criterion: tuple[str, str], question: str) -> None:
    assert reasons([criterion], question) == ["copied_from_problem"]


def test_generic_question_words_are_not_copies() -> None:
    ok = [
        ("Cost", "Each cost is computed from the given prices"),
        ("Equations", "The equations are solved by elimination or substitution"),
        ("Single digits", "A single digit such as 3 or 5 may appear in a general rule"),
    ]
    assert reasons(ok) == [None] * len(ok)
    base9 = "Compute $58_9 - 18_9.$ Express your answer in base $9.$"
    assert reasons(
        [("Base", "The answer is expressed in the base the problem asks for")], base9
    ) == [None]


def test_problem_terms_extends_with_generic_words() -> None:
    assert "eraser" in problem_terms(PENCILS)
    assert "eraser" not in problem_terms(PENCILS, generic_words=["erasers"])
    assert {"1.24", "1.82"} <= problem_terms(PENCILS)


@pytest.mark.parametrize(
    "criterion",
    [
        ("}]}, {style:'bold'}, {", "The process is based upon the given conditions"),
        ("<h1>Step 3", "Each rule applies to a single step"),
        ("Formula", "The step uses $a^2 + b^2$ for the sum of squares"),
        ("Fractions", "The step writes \\frac for every division"),
    ],
)
def test_markup_debris_is_rejected(criterion: tuple[str, str]) -> None:
    assert reasons([criterion]) == ["markup"]


def test_markup_rule_keeps_prices_and_brackets() -> None:
    ok = [
        ("Currency", "Amounts such as $5 keep their currency sign"),
        ("Units", "Units (such as m/s) are consistent"),
        ("[A] Signs", "Signs are kept"),
    ]
    assert reasons(ok, BOOKS) == [None, None, None]
    assert gate_criteria(ok, question=BOOKS)[2].title == "Signs"


def test_copied_from_solution() -> None:
    steps = [
        "Subtraction works the same in base $9$ as in base $10$.",
        "So we just find the difference of the numbers in the right column.",
    ]
    criteria = [
        ("Columns", "We just find the difference of the numbers in each column"),
        ("Columns", "Each column is handled from right to left"),
    ]
    assert reasons(criteria, solutions=steps) == ["copied_from_solution", None]
    assert reasons(criteria) == [None, None]
    assert reasons(criteria, solutions=steps, copy_run=20) == [None, None]


def test_near_duplicates_keep_the_first() -> None:
    criteria = [
        ("Arithmetic", "Each calculation gives the correct result"),
        ("Arithmetic", "Every calculation gives the correct results."),
        ("Units", "Units are consistent"),
        ("Consistent units", "Units are consistent"),
    ]
    verdicts = gate_criteria(criteria, question=PENCILS)
    assert [v.reason for v in verdicts] == [None, "duplicate", None, "duplicate"]
    assert "Arithmetic" in verdicts[1].message


def test_duplicate_of_a_rejected_criterion_is_judged_on_its_own() -> None:
    criteria = [
        ("Better", "The better solution computes each value correctly"),
        ("Values", "Each value is computed correctly"),
    ]
    assert reasons(criteria) == ["comparison", None]


def test_duplicate_threshold_is_configurable() -> None:
    criteria = [
        ("Units", "Units are consistent"),
        ("Units", "Units are clearly stated"),
    ]
    assert reasons(criteria) == [None, None]
    assert reasons(criteria, duplicate_jaccard=0.2) == [None, "duplicate"]


def test_prompt_examples_are_rejected_verbatim_and_near_verbatim() -> None:
    examples = [
        "Correct arithmetic",
        "Each arithmetic operation is carried out correctly",
        "Values are derived from the stated facts instead of being guessed",
    ]
    criteria = [
        ("Correct arithmetic", "Each arithmetic operation is carried out correctly."),
        ("Accuracy", "each arithmetic operation is carried out correctly"),
        ("Correct arithmetic", "Each sum and product in the step is right"),
        ("Each arithmetic operation is carried out correctly", "The step has no slips"),
        ("No guessing", "Values are derived from the stated facts rather than being guessed"),
    ]
    assert reasons(criteria, prompt_examples=examples) == [
        "prompt_example",
        "prompt_example",
        None,
        "prompt_example",
        "prompt_example",
    ]


def test_unicode_criteria() -> None:
    question = "Lena kauft 12 Äpfel für 3,60 €. Was kostet ein Apfel?"
    criteria = [
        ("Étapes justifiées", "Chaque étape découle des précédentes"),
        ("単位", "単位が一致している"),
        ("Rechnung", "Jeder Rechenschritt ist korrekt ausgeführt"),
        ("Preis", "Lena zahlt 3,60 € für alles"),
        ("Wiederholung", "ääää ist falsch"),
    ]
    assert reasons(criteria, question) == [None, None, None, "copied_from_problem", "repetition"]


def test_every_reason_is_documented_and_counted() -> None:
    criteria = [
        ("", ""),
        ("1.1.1.1", "1.1.1.1.1.1"),
        ("Step", "Step 2"),
        ("Better", "The better solution is better"),
        ("Example", "Each arithmetic operation is carried out correctly"),
        ("Price", "A pencil costs 29 cents"),
        ("Debris", '{"title": "Units are consistent"}'),
        ("Copy", "To solve this system, subtract the first equation from the second"),
        ("Arithmetic", "Each calculation gives the correct result"),
        ("Arithmetic", "Each calculation gives the correct result."),
    ]
    verdicts = gate_criteria(
        criteria,
        question=PENCILS,
        prompt_examples=["Each arithmetic operation is carried out correctly"],
        solutions=["To solve this system, let's subtract the first equation from the second."],
    )
    counts = rejection_counts(verdicts)
    assert set(counts) == set(REASONS)
    assert sum(counts.values()) == 9
    assert all(v.message for v in verdicts if not v.keep)
    assert [v.keep for v in verdicts].count(True) == 1


def test_verdict_to_dict_is_json_ready() -> None:
    v = GateVerdict("T", "D", False, "comparison", "compares solutions")
    assert v.to_dict() == {"keep": False, "reason": "comparison", "message": "compares solutions"}


def test_gate_is_deterministic() -> None:
    criteria = GOOD + [("Better", "The better solution is better")]
    assert gate_criteria(criteria, question=PENCILS) == gate_criteria(criteria, question=PENCILS)


def test_jaccard_ignores_function_words_and_plurals() -> None:
    assert jaccard("The calculations are correct", "A calculation is correct") == 1.0
    assert jaccard("", "") == 0.0


def test_example_texts_from_a_template() -> None:
    text = (
        'Answer: {"criteria": [{"title": "Units", "description": "Units are stated"}, '
        '{"title": "...", "description": "..."}]} $placeholder {"title": "$x"}'
    )
    assert example_texts(text) == ["Units", "Units are stated"]


def test_judge_template_examples_are_gated() -> None:
    examples = example_criteria("judge")
    assert examples, "the judge prompt shows example criteria"
    descriptions = [e for e in examples if len(e.split()) >= 4]
    assert descriptions
    criteria = [("Copied", d) for d in descriptions]
    got = reasons(criteria, BOOKS, prompt_examples=examples)
    assert all(r is not None for r in got), got
