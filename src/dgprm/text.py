"""How steps are written into prompts (one numbering, used by every stage), and how a
response is cut back into steps."""

from __future__ import annotations

import re


def number_steps(steps: list[str], start: int = 1) -> str:
    """Render steps as ``Step N: ...`` lines, numbered from ``start``.

    Example:
        >>> number_steps(["a", " b "])
        'Step 1: a\\nStep 2: b'
        >>> number_steps(["c"], start=3)
        'Step 3: c'
    """
    return "\n".join(f"Step {i}: {s.strip()}" for i, s in enumerate(steps, start=start))


#: A "Step N:" label at the start of a line, as policies write it: "Step 2:", "step 2.",
#: "**Step 2:**", "## Step 2" (a heading ends at the line's end).
STEP_LABEL = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?step[ \t]*(\d+)[ \t]*(?:\*\*)?[ \t]*"
    r"(?:[:.)](?:\*\*)?|(?=\n)|\Z)[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
#: Chat-template control tokens a decoded sequence may carry: ``<|im_end|>``,
#: ``<|eot_id|>``, ``<|endoftext|>``, ``<s>``, ``</s>``.
SPECIAL_TOKEN = re.compile(r"<\|[^<>|\s]{1,64}\|>|</?s>")


def strip_special_tokens(text: str) -> str:
    """``text`` without chat-template control tokens (see :data:`SPECIAL_TOKEN`).

    Example:
        >>> strip_special_tokens("2+3 = 5.<|im_end|><|endoftext|>")
        '2+3 = 5.'
    """
    return SPECIAL_TOKEN.sub("", text)


def _unlabelled(step: str) -> str:
    return STEP_LABEL.sub("", step, count=1).strip()


def split_steps(text: str, sep: str | None = None) -> list[str]:
    """Cut a response into reasoning steps.

    With ``sep=None`` (the default), the cut is chosen from the text: before every line that
    starts with a "Step N:" label when there is one (text before the first label is a step
    of its own); otherwise at blank lines (``"\\n\\n"``); otherwise at line breaks. With a
    ``sep``, the text is cut at every occurrence of it. Either way each step loses a leading
    "Step N:" label and surrounding whitespace, and empty pieces are dropped.

    Example:
        >>> split_steps("Step 1: 2+3 = 5.\\nStep 2: So the answer is 5.")
        ['2+3 = 5.', 'So the answer is 5.']
        >>> split_steps("We add.\\n\\n2+3 = 5.\\n\\nThe answer is 5.")
        ['We add.', '2+3 = 5.', 'The answer is 5.']
        >>> split_steps("2+3 = 5\\nSo 5.")
        ['2+3 = 5', 'So 5.']
        >>> split_steps("a ; b ;; c", sep=";")
        ['a', 'b', 'c']
    """
    if sep:
        pieces = text.split(sep)
    elif STEP_LABEL.search(text):
        starts = [m.start() for m in STEP_LABEL.finditer(text)]
        bounds = [0, *starts, len(text)] if starts[0] > 0 else [*starts, len(text)]
        pieces = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    elif re.search(r"\n[ \t]*\n", text):
        pieces = re.split(r"\n[ \t]*\n", text)
    else:
        pieces = text.split("\n")
    return [step for step in (_unlabelled(p) for p in pieces) if step]


def split_query(query: str, prompt: str | None = None) -> tuple[str, str]:
    """Split a prompt + response sequence (OpenRLHF's ``query``) into the question and the
    response, without chat-template control tokens.

    With ``prompt``, the query must start with it (compared as given, then without control
    tokens and surrounding whitespace). Without one, the question is the text before the
    first "Step N:" label. Raises :class:`ValueError` saying why when neither works.

    Example:
        >>> split_query("<|im_start|>user\\nWhat is 2+3?<|im_end|>\\n2+3 = 5.<|im_end|>",
        ...             "<|im_start|>user\\nWhat is 2+3?<|im_end|>\\n")
        ('user\\nWhat is 2+3?', '2+3 = 5.')
        >>> split_query("What is 2+3?\\nStep 1: 2+3 = 5.")
        ('What is 2+3?', 'Step 1: 2+3 = 5.')
    """
    if prompt is not None:
        if query.startswith(prompt):
            question, response = prompt, query[len(prompt) :]
        else:
            clean_query, clean_prompt = strip_special_tokens(query), strip_special_tokens(prompt)
            clean_query, clean_prompt = clean_query.lstrip(), clean_prompt.strip()
            if not clean_query.startswith(clean_prompt):
                raise ValueError("the query does not start with its prompt")
            question, response = clean_prompt, clean_query[len(clean_prompt) :]
    else:
        label = STEP_LABEL.search(query)
        if label is None or label.start() == 0:
            raise ValueError(
                "no prompt given and no 'Step N:' label after a question to tell the two apart"
            )
        question, response = query[: label.start()], query[label.start() :]
    return strip_special_tokens(question).strip(), strip_special_tokens(response).strip()
