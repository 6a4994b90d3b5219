"""Downstream tasks: loaders (samples, full data, bad records) and answer extraction."""

from __future__ import annotations

import json

import pytest

from dgprm.downstream.answers import extract_answer, parse_solution, parse_step, render_question
from dgprm.downstream.tasks import (
    FILES,
    Choice,
    TaskRecord,
    load_task,
    read_task,
    sample_file,
    task_file,
)
from dgprm.errors import InputError
from tests.conftest import SHARED

ARC = TaskRecord(
    id="arc",
    question="Which is the most likely effect?",
    choices=[
        Choice(label="A", text="Planetary density will decrease."),
        Choice(label="B", text="Planetary years will become longer."),
        Choice(label="C", text="Planetary days will become shorter."),
        Choice(label="D", text="Planetary gravity will become stronger."),
    ],
    answer="C",
)
QASC = TaskRecord(
    id="qasc",
    question="Climate is generally described in terms of what?",
    choices=[Choice(label=chr(65 + i), text=t) for i, t in enumerate(["sand", "forests", "a"])],
    answer="C",
)
YES_NO = TaskRecord(id="sqa", question="Is ice cold?", answer="yes")


# ------------------------------------------------------------------------- loaders ---


@pytest.mark.parametrize("task", list(FILES))
def test_every_split_has_a_sample_that_loads(task):
    for split in FILES[task]:
        records = load_task(task, None, split)
        assert len(records) >= 4 and len({r.id for r in records}) == len(records)
        for record in records:
            assert record.answer in record.labels
            assert (record.choices is None) == (task == "strategyqa")


def test_arc_numeric_labels_become_letters():
    numeric = [json.loads(line) for line in sample_file("arc-c", "test").open()][-1]
    assert numeric["answerKey"].isdigit()
    record = load_task("arc-c", None, "test")[-1]
    assert [c.label for c in record.choices][:2] == ["A", "B"]
    assert record.answer == chr(ord("A") + int(numeric["answerKey"]) - 1)


def test_qasc_choices_and_gold_letter_are_parsed_and_ids_are_record_indexes():
    records = load_task("qasc", None, "dev")
    first = records[0]
    assert first.id == "qasc-dev-0" and records[1].id == "qasc-dev-1"
    assert [c.label for c in first.choices] == list("ABCDEFGH")
    assert first.answer == "F" and first.choices[5].text == "local weather conditions"


@pytest.mark.skipif(not (SHARED / "arc_challenge").is_dir(), reason="needs ../shared/data")
def test_full_data_loads_with_official_counts():
    counts = {
        ("arc-c", "train"): 1119,
        ("arc-c", "dev"): 299,
        ("arc-c", "test"): 1172,
        ("strategyqa", "train"): 2061,
        ("strategyqa", "dev"): 229,
        ("qasc", "train"): 8134,
        ("qasc", "dev"): 926,
    }
    for (task, split), count in counts.items():
        assert len(load_task(task, SHARED, split)) == count
    # the task directory itself and the file work as well as the data root
    assert task_file("qasc", SHARED / "qasc", "dev") == SHARED / "qasc" / "dev.json"
    assert len(load_task("arc-c", SHARED / "arc_challenge", "test", limit=5)) == 5


def test_unknown_task_split_and_missing_data_are_refused(tmp_path):
    with pytest.raises(InputError, match="unknown task"):
        load_task("gsm8k", None, "test")
    with pytest.raises(InputError, match="no labelled split 'test'"):
        load_task("strategyqa", None, "test")
    with pytest.raises(InputError, match="no ARC-Challenge-Test.jsonl"):
        task_file("arc-c", tmp_path, "test")
    with pytest.raises(InputError, match="limit 0"):
        load_task("qasc", None, "dev", limit=0)


ARC_OK = {
    "id": "a1",
    "question": {
        "stem": "Hot?",
        "choices": [{"text": "yes", "label": "A"}, {"text": "no", "label": "B"}],
    },
    "answerKey": "A",
}


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda r: r["question"].pop("stem"), ":2: field 'question.stem': missing"),
        (lambda r: r.update(answerKey="E"), ":2: field '(record)': answer 'E' is not one of"),
        (
            lambda r: r["question"]["choices"][1].update(label="A"),
            ":2: field '(record)': choices: repeated labels",
        ),
        (lambda r: r["question"]["choices"][0].update(text=" "), "field 'choices.0.text': text is"),
        (lambda r: r.update(id=7), ":2: field 'id': expected str"),
    ],
)
def test_bad_arc_records_name_the_line_and_field(tmp_path, change, expected):
    bad = json.loads(json.dumps(ARC_OK))
    change(bad)
    path = tmp_path / "ARC-Challenge-Test.jsonl"
    path.write_text(json.dumps(ARC_OK) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(InputError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        read_task("arc-c", path, "test")


@pytest.mark.parametrize(
    "task, rows, expected",
    [
        ("strategyqa", [{"qid": "a", "question": "q?", "answer": "yes"}], "0: field 'answer'"),
        ("strategyqa", [{"qid": "a", "question": "q?"}], "record 0: field 'answer': missing"),
        (
            "strategyqa",
            [{"qid": "a", "question": "q?", "answer": True}] * 2,
            "record 1: field 'id': duplicate id 'a'",
        ),
        ("qasc", [{"question": "q?", "answers": "A) x B) y", "answer": "(A) x"}], "'answers'"),
        ("qasc", [{"question": "q?", "answers": "(A) x (B) y", "answer": "x"}], "'answer'"),
        ("qasc", [{"question": "q?", "answers": "(A) x (C) y", "answer": "(A) x"}], "labels"),
        ("qasc", [{"question": "", "answers": "(A) x (B) y", "answer": "(A) x"}], "'question'"),
        ("qasc", {"question": "not an array"}, "expected a JSON array"),
    ],
)
def test_bad_json_array_records_name_the_record_index_and_field(tmp_path, task, rows, expected):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(InputError, match=expected):
        read_task(task, path, "dev")


def test_malformed_json_array_names_the_line(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text('[\n{"qid": "a",\n "question": }]')
    with pytest.raises(InputError, match=r"dev.json:3: malformed JSON"):
        read_task("strategyqa", path, "dev")


# ------------------------------------------------------------- answer extraction ---


@pytest.mark.parametrize(
    "text, expected",
    [
        ("C", "C"),
        ("(C)", "C"),
        ('"C"', "C"),  # quoted
        ("“C”.", "C"),
        ("c", "C"),
        ("C.", "C"),
        ("**C**", "C"),
        ("C) Planetary days will become shorter.", "C"),
        ("(C) Planetary days will become shorter.", "C"),
        ("C: days get shorter", "C"),
        ("C, because the planet spins faster", "C"),
        ("Option C", "C"),
        ("Planetary days will become shorter", "C"),
        ("planetary days will become shorter.", "C"),
        ("C Planetary days will become shorter.", "C"),
        ("indeed (C).", "C"),  # one label cited in parentheses
        ("(C), not (A)", "C"),  # a label alone first wins
        ("either (C) or (A)", None),  # two cited labels: ambiguous
        ("see (x) and (C)", "C"),  # (x) is no label
        ("A planet spins faster", None),  # "A" is an article here, not the label
        ("E", None),  # not a choice
        ("days", None),
        ("", None),
        (None, None),
    ],
)
def test_choice_extraction(text, expected):
    assert extract_answer(text, ARC) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("yes", "yes"),
        ("Yes.", "yes"),
        ("**No**, it is not", "no"),
        ("True", "yes"),
        ("false", "no"),
        ("maybe", None),
        ("It is yes", None),
        ("", None),
    ],
)
def test_yes_no_extraction(text, expected):
    assert extract_answer(text, YES_NO) == expected


def test_a_choice_text_that_is_a_single_letter_word_is_read_as_the_label():
    # QASC choice C is the text "a": "a" alone is label A (a label alone wins), "(C)" is C
    assert extract_answer("a", QASC) == "A"
    assert extract_answer("(c)", QASC) == "C"


@pytest.mark.parametrize(
    "text, steps, answer",
    [
        (
            "Step 1: Faster rotation means a shorter day.\nStep 2: So days get shorter.\nAnswer: C",
            ["Faster rotation means a shorter day.", "So days get shorter.", "Answer: C"],
            "C",
        ),
        (  # continuation lines join their step; chatter after the answer line is dropped
            "Step 1: Rotation speeds up.\nThat shortens days.\n\nStep 2: Hence C.\n"
            "The answer is (C).\nI hope this helps!",
            ["Rotation speeds up.\nThat shortens days.", "Hence C.", "Answer: (C)."],
            "C",
        ),
        (  # the last answer line counts; text before the first "Step N:" is a preamble
            "Sure.\nAnswer: A\nStep 1: wait, that is wrong.\nFinal answer: C",
            ["wait, that is wrong.", "Answer: C"],
            "C",
        ),
        (  # no step labels: paragraphs, then lines
            "Rotation speeds up.\nDays shorten.\nAnswer: E",
            ["Rotation speeds up.", "Days shorten.", "Answer: E"],
            None,
        ),
        ("Days shorten, so it is C.", ["Days shorten, so it is C."], None),
        (  # the marker opens the last sentence of a line: the text before it is a step
            "Step 1: Days shorten. The answer is D.",
            ["Days shorten.", "Answer: D."],
            "D",
        ),
        (  # ... the last such sentence; "is not the answer" is no marker
            "It spins, which is not the answer. Answer: no. The answer is C.",
            ["It spins, which is not the answer. Answer: no.", "Answer: C."],
            "C",
        ),
        ("Answer choices differ. So it is C.", ["Answer choices differ. So it is C."], None),
        ("", [], None),
    ],
)
def test_parse_solution(text, steps, answer):
    solution = parse_solution(text, ARC)
    assert solution.steps == steps
    assert solution.answer == answer


def test_too_many_steps_are_joined_not_dropped():
    text = "\n".join(f"Step {i}: s{i}" for i in range(1, 7)) + "\nAnswer: yes"
    solution = parse_solution(text, YES_NO, max_steps=4)
    assert solution.steps == ["s1", "s2", "s3\ns4\ns5\ns6", "Answer: yes"]


def test_parse_step_reads_one_step_or_the_answer_line():
    assert parse_step("Step 3: It spins faster.\nStep 4: more", ARC) == (
        "It spins faster.",
        None,
        False,
    )
    assert parse_step("**Answer:** C", ARC) == ("Answer: C", "C", True)
    assert parse_step("Answer: perhaps", ARC) == ("Answer: perhaps", None, True)
    assert parse_step("  \n ", ARC) == ("", None, False)
    assert parse_step("It spins faster. The answer is C.", ARC) == (
        "It spins faster. The answer is C.",
        "C",
        True,
    )


def test_question_shows_lettered_choices():
    assert render_question(ARC).splitlines()[1:3] == [
        "Choices:",
        "(A) Planetary density will decrease.",
    ]
    assert render_question(YES_NO) == "Is ice cold?"
