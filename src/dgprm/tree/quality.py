"""A deterministic quality gate for judge-written criteria (runs before the LLM validator).

A weak judge writes criteria such as ``"The better solution is better"``,
``"2. The better solution is more efficient than the worst solution"`` or
``"1.1.1.1.1.1…"``, and a weak validator keeps them. :func:`gate_criteria`
cleans each ``(title, description)`` and rejects, with a machine-readable
reason code (see :data:`REASONS`), criteria that are

- ``empty`` after cleaning;
- ``repetition``: runs of one character (``"aaaa"``), of a short pattern
  (``"1.1.1.1"``) or of words (``"the the the"``, ``"is correct is correct"``);
- ``too_few_words``: fewer than ``min_words`` distinct alphabetic words in
  title and description together (``"Units are consistent"`` has three and passes);
- ``markup``: JSON, HTML or LaTeX debris (``{``, ``}``, ``<``, ``>``, ``$…$``), which a
  weak model leaks into strings when sampling penalties push it off the format;
- ``comparison``: a comparison between solutions (``"the better solution…"``,
  ``"than the other solution"``, ``"Solution B"``) instead of a requirement on a step;
- ``prompt_example``: a copy of one of the prompt's own example criteria;
- ``copied_from_problem``: a multi-digit number, a name or an uncommon word of
  the question (``"pencil"``, ``"Pandora"``, ``"1.24"``);
- ``copied_from_solution``: a run of ``copy_run`` or more words taken from one of
  the pair's solution steps (when ``solutions`` are given);
- ``duplicate``: token-set Jaccard similarity ``>= duplicate_jaccard`` with an
  earlier kept criterion of the same call (the first one is kept).

Rules are checked in that order and a verdict carries the first failing one.
The gate is a pure function: same input, same verdicts.

Use in tree building: call it on the judge's criteria of one pair, with
``question=pair.question``, ``solutions=pair.chosen_steps + pair.rejected_steps`` and
``prompt_examples=example_criteria("judge")``; send only the kept (cleaned)
criteria to the LLM validator, and store each verdict's :meth:`GateVerdict.to_dict`
beside the raw text and the validator's verdict. Passing no ``prompt_examples``
turns the ``prompt_example`` rule off.

Example:
    >>> verdicts = gate_criteria(
    ...     [("2. Correct arithmetic", "Each calculation gives the right result."),
    ...      ("Comparison", "The better solution is better"),
    ...      ("Units", "Units are consistent")],
    ...     question="A pencil costs 29 cents. What do 12 pencils cost?")
    >>> [(v.title, v.keep, v.reason) for v in verdicts]
    [('Correct arithmetic', True, None), ('Comparison', False, 'comparison'), ('Units', True, None)]
    >>> dict(rejection_counts(verdicts))
    {'comparison': 1}
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

REASONS: dict[str, str] = {
    "empty": "nothing left after cleaning",
    "repetition": "repeated characters, patterns or words",
    "too_few_words": "too few real words",
    "markup": "contains JSON, HTML or LaTeX debris",
    "comparison": "compares solutions instead of stating a requirement on a step",
    "prompt_example": "copies an example criterion of the prompt",
    "copied_from_problem": "copies a number, name or uncommon word of the problem",
    "copied_from_solution": "copies a run of words from a solution step",
    "duplicate": "near-duplicate of an earlier criterion of the same pair",
}
"""Every reason code the gate can give, with its meaning."""


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision on one criterion.

    ``title`` and ``description`` are the cleaned texts (store these, not the
    raw ones, when the criterion is kept). ``reason`` is a code of
    :data:`REASONS` (``None`` when kept) and ``message`` a short human
    explanation naming the offending text.
    """

    title: str
    description: str
    keep: bool
    reason: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (for provenance in tree.json).

        Example:
            >>> GateVerdict("T", "D", False, "empty", "nothing left").to_dict()
            {'keep': False, 'reason': 'empty', 'message': 'nothing left'}
        """
        return {"keep": self.keep, "reason": self.reason, "message": self.message}


# --- cleaning ------------------------------------------------------------------------------

_QUOTES = "\"'`“”‘’„«»‹›「」『』"
_TRAILING = ".,;:!·…。、，；：！"
_PREFIX = re.compile(
    r"""^(?:
        (?:criterion|criteria|requirement|rule|item|point)\s*\#?\d*\s*[:.)\-–—]\s*  # Criterion 3:
      | (?:criterion|criteria|requirement|rule|item|point)\s+\#?\d+\s+             # Criterion 3 x
      | \(?\d{1,3}(?:\.\d{1,3}){0,2}[.):\-–—]\s*(?=[^\W\d_]|[-*•·–—+>"'“‘(])       # 2.  1)  1.2.
      | \(?[a-zA-Z][.)]\s+                                                          # a)  b.
      | [-*•·–—+>]+\s*                                                              # bullets
      | \#+\s*                                                                      # headings
      | \[[A-Za-z0-9]{1,3}\]\s*                                                     # [A] [2]
    )""",
    re.IGNORECASE | re.VERBOSE,
)


def clean_text(text: str) -> str:
    """Normalise one criterion text: whitespace, quotes, markup, list prefixes, end punctuation.

    Example:
        >>> clean_text('  "2. Criterion 3: **Units   are consistent**." ')
        'Units are consistent'
        >>> clean_text("1) - Étapes justifiées…")
        'Étapes justifiées'
        >>> clean_text("1.1.1.1.1.1…")
        '1.1.1.1.1.1'
    """
    text = unicodedata.normalize("NFC", text)
    text = " ".join(text.split())
    previous = None
    while previous != text:
        previous = text
        text = text.replace("**", "").replace("__", "").strip()
        text = text.strip(_QUOTES + " ")
        text = text.rstrip(_TRAILING + " ")
        stripped = _PREFIX.sub("", text, count=1)
        # keep a bare number such as "1.1.1.1": it is not a prefix of anything
        if stripped.strip():
            text = stripped
    return text


# --- words ---------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _is_unspaced_script(char: str) -> bool:
    name = unicodedata.name(char, "")
    return name.startswith(("CJK UNIFIED", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA", "KATAKANA"))


def words(text: str) -> list[str]:
    """Alphabetic words of ``text`` (any script; each CJK character is one word).

    Example:
        >>> words("Units are consistent (m/s), step 2.")
        ['Units', 'are', 'consistent', 'm', 's', 'step']
        >>> words("Étape justifiée: 单位一致")
        ['Étape', 'justifiée', '单', '位', '一', '致']
    """
    out: list[str] = []
    for match in _WORD.findall(text):
        if any(_is_unspaced_script(c) for c in match):
            run = ""
            for c in match:
                if _is_unspaced_script(c):
                    if run:
                        out.append(run)
                        run = ""
                    out.append(c)
                else:
                    run += c
            if run:
                out.append(run)
        else:
            out.append(match)
    return out


def _real(word: str) -> bool:
    """A word that counts: two or more letters, or any single CJK character, or 'a'/'I'."""
    return len(word) >= 2 or _is_unspaced_script(word) or word.casefold() in {"a", "i"}


def stem(word: str) -> str:
    """A light English stem for matching (plural and common verb endings).

    Example:
        >>> [stem(w) for w in ["Pencils", "boxes", "cities", "computed", "carrying", "class"]]
        ['pencil', 'box', 'city', 'comput', 'carry', 'class']
    """
    w = word.casefold()
    if len(w) <= 3 or not w.isascii():
        return w
    for suffix, repl in (
        ("ies", "y"),
        ("sses", "ss"),
        ("xes", "x"),
        ("ches", "ch"),
        ("shes", "sh"),
    ):
        if w.endswith(suffix):
            return w[: -len(suffix)] + repl
    if w.endswith("ing") and len(w) > 5:
        return w[:-3]
    if w.endswith("ed") and len(w) > 4:
        return w[:-2]
    if w.endswith("es") and len(w) > 4 and w[-3] in "aeiou":
        # "values" -> "valu" would miss "value"; drop only the s
        return w[:-1]
    if w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def _word_list(text: str) -> list[str]:
    return text.split()


# Function words: ignored by the duplicate measure and never "copied from the problem".
_STOPWORDS = frozenset(
    _word_list(
        """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing done down during each
    either else every few for from further had has have having he her here hers him his how
    however i if in instead into is it its itself just let lets let's may me might more most
    much must my neither no nor not now of off on once one only or other our out over own per
    same shall rather she should so some such than that the their them then there these they
    this those through thus to too under until up upon us very was we were what when where
    whether which while who whom whose why will with within without would yes yet you your"""
    )
)

# Generic vocabulary of reasoning steps and of everyday word problems. A question word
# outside this list (and outside _STOPWORDS) counts as specific to the problem.
_GENERIC = frozenset(
    stem(w)
    for w in _word_list(
        """
    step steps solution solutions answer answers result results question problem problems task
    reasoning reason reasons logic logical logically argument claim claims statement statements
    assumption assumptions condition conditions constraint constraints information given data
    fact facts detail details conclusion conclusions final first second third last next previous
    earlier later prior following follow follows followed order sequence process method methods
    approach approaches strategy plan goal part parts case cases example examples
    calculation calculations calculate calculated compute computed computation computations
    arithmetic operation operations equation equations expression expressions formula formulas
    variable variables value values number numbers numeric numerical quantity quantities amount
    amounts unit units total totals sum sums difference differences product products quotient
    remainder ratio ratios rate rates fraction fractions percent percentage decimal decimals
    integer integers digit digits base bases sign signs term terms coefficient coefficients
    factor factors multiple multiples power powers root roots square squares cube average mean
    median maximum minimum limit range count counts counting measure measures measurement
    add adds added adding addition subtract subtraction multiply multiplication divide division
    divided times plus minus equal equals equality inequality greater less larger smaller
    simplify simplifies simplified simplification solve solves solved solving substitute
    substitution substitutes eliminate elimination isolate system systems column columns row rows
    carry borrow convert conversion converted round rounding estimate estimation approximate
    exact exactly precise precisely correct correctly correctness incorrect error errors mistake
    mistakes wrong accurate accurately accuracy valid validity invalid true false right
    consistent consistency inconsistent clear clearly clarity concise relevant relevance
    necessary needed unnecessary redundant redundancy complete completely completeness explicit
    explicitly justified justify justification supported support supports verify verified
    verification check checks checked checking confirm confirms confirmed derive derived
    derivation deduce deduction infer inference imply implies explain explains explained
    explanation describe describes state states stated define defines defined definition
    identify identifies identified apply applies applied application use uses used using
    write writes written show shows shown set sets setting express expressed expresses
    represent represents representation relate relates relation relationship translate
    interpret interpretation read reads understand understanding consider considers compare
    comparison contradict contradiction repeat repeats repeated repetition skip skips skipped
    introduce introduces introduced keep keeps kept make makes made take takes get gets give
    gives find finds found obtain obtains lead leads need needs require requires required
    requirement ensure ensures include includes including included contain contains
    match matches matching agree agrees hold holds remain remains change changes
    single each every whole specific general generally particular relevant original new
    same different similar known unknown missing any overall directly step-by-step
    good well properly appropriate appropriately reasonable sound sensible careful
    cost costs price prices money pay paid buy bought sell sold spend spent earn earned
    time times hour hours minute minutes second seconds day days week weeks month months year
    years age ages length lengths width height distance distances speed speeds area areas
    volume volumes weight weights mass size sizes amount cent cents dollar dollars euro euros
    meter meters metre metres centimeter centimeters kilometer kilometers gram grams kilogram
    kilograms liter liters litre litres mile miles inch inches foot feet degree degrees
    zero one two three four five six seven eight nine ten hundred thousand million half
    twice double triple quarter many several people person item items object objects group
    groups share shares part whole left remaining each per together altogether combined
    compute express answer base
    function functions polynomial polynomials probability probabilities outcome outcomes event
    events expected expectation combination combinations permutation permutations choose
    triangle triangles circle circles angle angles side sides point points line lines slope
    coordinate coordinates graph graphs perimeter radius diameter circumference rectangle
    square polygon vertex vertices edge edges shape shapes parallel perpendicular
    prime primes divisor divisors divisible multiple exponent exponents logarithm logarithms
    interval intervals domain element elements matrix vector integral derivative series
    modulo mod even odd positive negative real rational irrational complex whole natural
    linear quadratic solution solutions system identity inverse proportion proportional
    percentages discount interest profit loss speed rate work"""
    )
)

_COMPARISON_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        # "the better solution", "the other answer", "the rejected response"
        r"\b(?:better|worse|worst|best|chosen|rejected|preferred|winning|losing|other|"
        r"first|second|former|latter|good|flawed|faulty)\s+"
        r"(?:solutions?|answers?|responses?|trajector(?:y|ies)|attempts?|ones?)\b",
        # "Solution A", "response 2" (upper-case letters only: "answer a question" is fine)
        r"\b(?:solution|answer|response|trajectory|attempt|candidate|option)\s+"
        r"(?:(?-i:[A-D])|[12])\b(?!['’-])",
        # "than the other", "compared with the worse", "unlike the rejected"
        r"\b(?:than|compared\s+(?:to|with)|versus|vs\.?|unlike)\s+(?:the\s+|a\s+)?"
        r"(?:other|worse|worst|better|best|first|second|rejected|chosen|"
        r"solutions?|answers?|responses?)\b",
        # "both solutions use ..." (but not "both solutions of the equation")
        r"\b(?:both|neither|either)\s+(?:solutions|answers|responses)\b(?!\s+(?:of|to)\b)",
    )
)

_CHAR_RUN = re.compile(r"(\S)\1{3,}")
_PATTERN_RUN = re.compile(r"(\S{2,4}?)\1{2,}")


def _repetition(text: str) -> str | None:
    """The offending run in ``text``, or ``None``."""
    if m := _CHAR_RUN.search(text):
        return m.group(0)
    if m := _PATTERN_RUN.search(text):
        return m.group(0)
    tokens = [t.casefold() for t in text.split()]
    for n in range(1, 5):
        need = 3 if n == 1 else 2
        for i in range(len(tokens) - n * need + 1):
            gram = tokens[i : i + n]
            if all(tokens[i + k * n : i + (k + 1) * n] == gram for k in range(need)):
                return " ".join(tokens[i : i + n * need])
    return None


def _content_stems(text: str) -> set[str]:
    return {stem(w) for w in words(text) if w.casefold() not in _STOPWORDS and _real(w)}


def jaccard(a: str, b: str) -> float:
    """Jaccard similarity of the content-word stems of ``a`` and ``b`` (0 when both empty).

    Example:
        >>> jaccard("Each calculation is correct", "Every calculation is correct.")
        1.0
        >>> round(jaccard("Units are consistent", "Units are clearly stated"), 2)
        0.25
    """
    sa, sb = _content_stems(a), _content_stems(b)
    if not sa and not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


def _normal(text: str) -> str:
    return " ".join(w.casefold() for w in words(text))


def _sentence_starts(text: str) -> set[int]:
    """Character offsets where a sentence starts."""
    starts = {0}
    for m in re.finditer(r"[.!?:]\s+|\n+", text):
        starts.add(m.end())
    return starts


def problem_terms(question: str, *, generic_words: Collection[str] = ()) -> set[str]:
    """The terms of ``question`` a general criterion must not contain.

    Multi-digit numbers (``"1.24"``, ``"29"``), capitalised words that are not
    generic vocabulary (names: ``"Pandora"``, ``"Zoë"``), and uncommon ASCII
    words of four or more letters (``"pencil"``, ``"eraser"``). Words are
    returned as :func:`stem` s; numbers as written. ``generic_words`` extends
    the built-in generic vocabulary. Non-ASCII lower-case words are never
    counted as uncommon (the vocabulary is English).

    Example:
        >>> sorted(problem_terms("Three pencils and a jumbo eraser cost $1.24. Zoë pays 29 cents."))
        ['1.24', '29', 'eraser', 'jumbo', 'pencil', 'zoë']
        >>> sorted(problem_terms("Compute $58_9 - 18_9.$ Express your answer in base $9.$"))
        ['18', '58']
    """
    generic = _GENERIC | {stem(w) for w in generic_words}
    terms = {n for n in _NUMBER.findall(question) if sum(c.isdigit() for c in n) >= 2}
    starts = _sentence_starts(question)
    for m in _WORD.finditer(question):
        word = m.group(0)
        key = stem(word)
        if word.casefold() in _STOPWORDS or key in generic or not _real(word):
            continue
        if word[0].isupper():
            at_start = m.start() in starts or question[: m.start()].rstrip()[-1:] in {"", "("}
            lower_elsewhere = re.search(rf"\b{re.escape(word.casefold())}\b", question) is not None
            if not at_start or not lower_elsewhere:
                terms.add(key)
        elif word.isascii() and len(word) >= 4:
            terms.add(key)
    return terms


_MARKUP = re.compile(r"[{}<>\\]|\$[^$\s][^$]*\$")


def _word_runs(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = [w.casefold() for w in words(text)]
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def _copied(text: str, terms: set[str]) -> str | None:
    for n in _NUMBER.findall(text):
        if n in terms:
            return n
    for w in words(text):
        if stem(w) in terms:
            return w
    return None


# --- the gate ------------------------------------------------------------------------------


def gate_criteria(
    criteria: Sequence[tuple[str, str]],
    *,
    question: str,
    prompt_examples: Iterable[str] = (),
    min_words: int = 3,
    duplicate_jaccard: float = 0.8,
    generic_words: Collection[str] = (),
    solutions: Iterable[str] = (),
    copy_run: int = 6,
) -> list[GateVerdict]:
    """Clean and check the ``(title, description)`` criteria one judge call wrote for one pair.

    Returns one :class:`GateVerdict` per input, in order. ``question`` is the
    pair's problem; ``prompt_examples`` are the example criterion texts shown in
    the judge prompt (see :func:`dgprm.prompts.examples.example_criteria`);
    ``solutions`` are the pair's solution steps (both sides), for the
    ``copied_from_solution`` rule.

    Example:
        >>> vs = gate_criteria(
        ...     [("Accuracy", "Each arithmetic operation is carried out correctly"),
        ...      ("Names", "The price of a pencil is found from the two equations"),
        ...      ("Arithmetic", "Every calculation gives the correct result"),
        ...      ("Arithmetic", "Each calculation gives the correct result"),
        ...      ("1.1.1.1.1", "1.1.1.1.1.1")],
        ...     question="Three pencils cost $1.24. What does a pencil cost?",
        ...     prompt_examples=["Each arithmetic operation is carried out correctly"])
        >>> [v.reason for v in vs]
        ['prompt_example', 'copied_from_problem', None, 'duplicate', 'repetition']
    """
    examples = [e for e in (clean_text(x) for x in prompt_examples) if e]
    example_norms = {_normal(e) for e in examples}
    terms = problem_terms(question, generic_words=generic_words)
    runs: set[tuple[str, ...]] = set()
    for step in solutions:
        runs |= _word_runs(step, copy_run)
    kept: list[str] = []
    verdicts: list[GateVerdict] = []
    for raw_title, raw_description in criteria:
        title, description = clean_text(raw_title), clean_text(raw_description)
        reason, message = _check(
            title,
            description,
            kept,
            examples,
            example_norms,
            terms,
            runs,
            copy_run,
            min_words,
            duplicate_jaccard,
        )
        if reason is None:
            kept.append(f"{title}. {description}")
        verdicts.append(GateVerdict(title, description, reason is None, reason, message))
    return verdicts


def _check(
    title: str,
    description: str,
    kept: list[str],
    examples: list[str],
    example_norms: set[str],
    terms: set[str],
    runs: set[tuple[str, ...]],
    copy_run: int,
    min_words: int,
    duplicate_jaccard: float,
) -> tuple[str | None, str]:
    parts = (title, description)
    if not any(words(p) or _NUMBER.search(p) for p in parts):
        return "empty", "no words left after cleaning"
    for part in parts:
        if run := _repetition(part):
            return "repetition", f"repeated run {run!r}"
    distinct = {w.casefold() for p in parts for w in words(p) if _real(w)}
    if len(distinct) < min_words:
        return "too_few_words", f"{len(distinct)} distinct real words, need {min_words}"
    for part in parts:
        if m := _MARKUP.search(part):
            return "markup", f"markup {m.group(0)!r}"
    for part in parts:
        for pattern in _COMPARISON_PATTERNS:
            if m := pattern.search(part):
                return "comparison", f"compares solutions: {m.group(0)!r}"
    # a short title ("Arithmetic") may be shared with an example; a copied sentence may not
    sentences = [p for p in parts if p is description or len(_content_stems(p)) >= 3]
    for part in sentences:
        if not words(part):
            continue
        if _normal(part) in example_norms:
            return "prompt_example", f"copies the prompt example {part!r}"
        for example in examples:
            if jaccard(part, example) >= duplicate_jaccard:
                return "prompt_example", f"near-copy of the prompt example {example!r}"
    for part in parts:
        if term := _copied(part, terms):
            return "copied_from_problem", f"copies {term!r} from the problem"
    if runs:
        for part in parts:
            if shared := sorted(_word_runs(part, copy_run) & runs):
                return "copied_from_solution", f"copies {' '.join(shared[0])!r} from a solution"
    text = f"{title}. {description}"
    for earlier in kept:
        if (score := jaccard(text, earlier)) >= duplicate_jaccard:
            return "duplicate", f"overlap {score:.2f} with {earlier!r}"
    return None, ""


def rejection_counts(verdicts: Iterable[GateVerdict]) -> Counter[str]:
    """How many criteria each reason rejected (kept ones are not counted).

    Example:
        >>> vs = [GateVerdict("a", "b", False, "comparison"), GateVerdict("c", "d", True),
        ...       GateVerdict("e", "f", False, "comparison"), GateVerdict("g", "h", False, "empty")]
        >>> rejection_counts(vs).most_common()
        [('comparison', 2), ('empty', 1)]
    """
    return Counter(v.reason for v in verdicts if not v.keep and v.reason is not None)
