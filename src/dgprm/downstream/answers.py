"""What the policy is shown and what is read back: the question text, the steps of a
solution and its final answer.

The policy is asked (``prompts/solve.txt``) for numbered steps ("Step 1: ...") and
a final line "Answer: ...". :func:`parse_solution` splits the steps and finds the
final answer line; :func:`extract_answer` reads a choice label (ARC-Challenge,
QASC) or yes/no (StrategyQA) from it. An answer that cannot be read is ``None`` —
counted as unextractable by every strategy, never guessed.

Extraction rules, on the text after the *last* answer line ("Answer:", "Final
answer:", "The (final|correct) answer is", optionally after "Step N:" and markdown, at
the start of a line or of a sentence within it: "... so it is D. The answer is D."):

- choice: a label alone ("C", "(C)", "C.", "C)", "Option C"), a label followed by
  ``.`` ``)`` ``:`` or ``,`` and any text ("C) Planetary days ..."), a label followed by
  a space and that choice's own text; else the whole text equal to exactly one
  choice's text (case and end punctuation ignored); else the one label cited in
  parentheses ("indeed (C)"; two different ones are ambiguous). "A planet ..." is
  *not* read as label A unless the rest is choice A's text.
- yes/no: the first word is yes/true (→ ``yes``) or no/false (→ ``no``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dgprm.downstream.tasks import TaskRecord

MAX_STEPS = 16
STEP_CHARS = 1000
_STEP_LABEL = re.compile(r"^\s*[*#]*\s*step\s*(\d+)\s*[*]*\s*[:.)\-]\s*[*]*\s*", re.I)
_ANSWER_LINE = re.compile(
    r"^\s*[*#>\-\s]*(?:step\s*\d+\s*[*]*\s*[:.)\-]\s*)?[*]*\s*"  # bullets, "Step N:"
    r"(?:the\s+)?(?:(?:final|correct)\s+)?answer(?![a-z])\s*[*]*\s*"  # not "Answers"
    r"(?:(?:is\b|[:：\-])\s*[*]*\s*)+(?P<rest>.*)$",
    re.I,
)
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+")
_TRIM = " \t*_`'\"“”.,;!"
_QUOTES = "*_`'\"“” "


@dataclass(frozen=True)
class Solution:
    """A parsed solution: its steps (the answer line last, when there is one) and the
    extracted answer (``None``: none could be read)."""

    steps: list[str]
    answer: str | None
    answer_line: str | None = None


def render_question(record: TaskRecord) -> str:
    """The question as the policy and the PRMs see it: with its lettered choices.

    Example:
        >>> from dgprm.downstream.tasks import Choice
        >>> r = TaskRecord(id="q", question="Which melts?", answer="A",
        ...                choices=[Choice(label="A", text="ice"), Choice(label="B", text="rock")])
        >>> print(render_question(r))
        Which melts?
        Choices:
        (A) ice
        (B) rock
    """
    if record.choices is None:
        return record.question
    lines = [record.question, "Choices:", *(f"({c.label}) {c.text}" for c in record.choices)]
    return "\n".join(lines)


def answer_form(record: TaskRecord) -> str:
    """How the final answer is to be written, for the prompt.

    Example:
        >>> answer_form(TaskRecord(id="q", question="Is ice cold?", answer="yes"))
        'yes or no'
    """
    if record.choices is None:
        return "yes or no"
    labels = [c.label for c in record.choices]
    return f"<the letter of the correct choice: {', '.join(labels[:-1])} or {labels[-1]}>"


def answer_text(line: str) -> str | None:
    """The text after an answer marker on ``line``, or ``None`` when it is no answer line.

    Example:
        >>> answer_text("**Final answer:** (C)"), answer_text("Step 4: The answer is no.")
        ('(C)', 'no.')
        >>> answer_text("Answers vary by region.") is None
        True
        >>> answer_text("Plants make sugar. The answer is D.")
        'D.'
    """
    found = _split_answer(line)
    return None if found is None else found[1]


def _split_answer(line: str) -> tuple[str, str] | None:
    """``(text before the marker, text after it)``: a marker at the start of the line
    wins, else the one that opens the line's last sentence with a marker."""
    match = _ANSWER_LINE.match(line)
    if match is not None:
        return "", match["rest"].strip()
    for end in reversed([m.end() for m in _SENTENCE_END.finditer(line)]):
        match = _ANSWER_LINE.match(line[end:])
        if match is not None:
            return line[:end].strip(), match["rest"].strip()
    return None


def _norm(text: str) -> str:
    return " ".join(text.strip(_TRIM).lower().split())


def extract_answer(text: str | None, record: TaskRecord) -> str | None:
    """The answer in ``text`` (what follows the answer marker) for ``record``'s task, or
    ``None`` when it cannot be read unambiguously.

    Example:
        >>> from dgprm.downstream.tasks import Choice
        >>> r = TaskRecord(id="q", question="?", answer="B", choices=[
        ...     Choice(label="A", text="ice"), Choice(label="B", text="a rock")])
        >>> texts = ["B", "(b)", '"B"', "B) a rock", "a rock", "A rock", "E"]
        >>> [extract_answer(t, r) for t in texts]
        ['B', 'B', 'B', 'B', 'B', 'B', None]
        >>> yn = TaskRecord(id="q", question="?", answer="no")
        >>> [extract_answer(t, yn) for t in ["Yes, it is.", "False", "maybe"]]
        ['yes', 'no', None]
    """
    if text is None:
        return None
    clean = text.strip().strip(_QUOTES)
    if not clean:
        return None
    if record.choices is None:
        words = re.findall(r"[a-z]+", clean.lower())
        first = words[0] if words else ""
        return "yes" if first in ("yes", "true") else "no" if first in ("no", "false") else None
    labels = {c.label.upper(): c.label for c in record.choices}
    texts = {c.label: _norm(c.text) for c in record.choices}
    body = re.sub(r"^(?:option|choice)\s+", "", clean, flags=re.I)
    strict = re.match(r"^\(\s*([A-Za-z0-9])\s*\)(.*)$", body) or re.match(
        r"^([A-Za-z0-9])\s*(?:[.):,]\s*(.*))?$", body.rstrip(_TRIM) if len(body) <= 3 else body
    )
    if strict and strict[1].upper() in labels:
        return labels[strict[1].upper()]
    loose = re.match(r"^([A-Z0-9])\s+(.+)$", body)
    if loose and loose[1] in labels and _norm(loose[2]) == texts[labels[loose[1]]]:
        return labels[loose[1]]
    by_text = [label for label, t in texts.items() if t and t == _norm(body)]
    if len(by_text) == 1:
        return by_text[0]
    found = re.findall(r"\(\s*([A-Za-z0-9])\s*\)", body)
    cited = {labels[m.upper()] for m in found if m.upper() in labels}
    return cited.pop() if len(cited) == 1 else None


def _split_steps(lines: list[str]) -> list[str]:
    if any(_STEP_LABEL.match(line) for line in lines):
        steps: list[str] = []
        for line in lines:
            label = _STEP_LABEL.match(line)
            if label:
                steps.append(line[label.end() :].strip())
            elif steps and line.strip():
                steps[-1] = f"{steps[-1]}\n{line.strip()}".strip()
        return [s for s in steps if s]
    paragraphs = [p.strip() for p in "\n".join(lines).split("\n\n") if p.strip()]
    if len(paragraphs) == 1:
        return [line.strip() for line in paragraphs[0].splitlines() if line.strip()]
    return paragraphs


def parse_solution(text: str, record: TaskRecord, max_steps: int = MAX_STEPS) -> Solution:
    """Split a policy's solution into steps and read its final answer.

    Steps are the "Step N:" blocks (else the paragraphs, else the lines) before the
    last answer line; the answer line itself is appended as the last step, so a PRM
    sees the conclusion. Steps beyond ``max_steps`` are joined into the last reasoning
    step; text before the first "Step N:" label (a preamble) and after the answer line
    is dropped.

    Example:
        >>> r = TaskRecord(id="q", question="Is ice cold?", answer="yes")
        >>> text = "Step 1: Ice is frozen water.\\nStep 2: It is cold.\\nAnswer: yes"
        >>> s = parse_solution(text, r)
        >>> s.steps, s.answer
        (['Ice is frozen water.', 'It is cold.', 'Answer: yes'], 'yes')
        >>> parse_solution("Ice is cold, I think.", r).answer is None
        True
    """
    lines = text.strip().splitlines()
    found = [(i, _split_answer(line)) for i, line in enumerate(lines)]
    answers = [(i, a) for i, a in found if a is not None]
    if answers:
        index, (before, rest) = answers[-1]
        body = [*lines[:index], before] if before else lines[:index]
        answer_line = f"Answer: {rest}".strip()
    else:
        body, rest, answer_line = lines, None, None
    steps = [s[:STEP_CHARS] for s in _split_steps(body)]
    reasoning = max(1, max_steps - (answer_line is not None))
    if len(steps) > reasoning:
        steps = [*steps[: reasoning - 1], "\n".join(steps[reasoning - 1 :])]
    if answer_line is not None and rest:
        steps.append(answer_line)
    return Solution(steps, extract_answer(rest, record), answer_line if rest else None)


def parse_step(text: str, record: TaskRecord) -> tuple[str, str | None, bool]:
    """The first step of a one-step generation (beam search): ``(step, answer, final)``.

    ``final`` is true when the step is an answer line; ``answer`` is what it extracts
    (``None`` when unreadable). An empty generation gives ``("", None, False)``.

    Example:
        >>> r = TaskRecord(id="q", question="Is ice cold?", answer="yes")
        >>> parse_step("Step 2: Ice is frozen.\\nStep 3: ...", r)
        ('Ice is frozen.', None, False)
        >>> parse_step("Answer: Yes.", r)
        ('Answer: Yes.', 'yes', True)
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "", None, False
    found = _split_answer(lines[0])
    if found is not None:
        before, rest = found
        step = lines[0].strip() if before else f"Answer: {rest}".strip()
        return step[:STEP_CHARS], extract_answer(rest, record), True
    steps = _split_steps(lines)
    if not steps:
        return "", None, False
    # a continuation of unnumbered lines is one step; numbered text: the first step only
    first = steps[0] if _STEP_LABEL.match(lines[0]) else lines[0].strip()
    return first[:STEP_CHARS], None, False
