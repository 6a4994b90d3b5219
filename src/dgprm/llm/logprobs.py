"""Probability-weighted (expected) scores from token log-probabilities, G-Eval style.

Instead of the one score the model sampled, use the model's distribution over
the allowed score values at that position: ``E[s] = Σ v·p(v) / Σ p(v)``.

What the embedded backend returns (xllamacpp ``Server.handle_chat_completions``
and llama.cpp's own HTTP server answer in the same shape): a body with
``"logprobs": true, "top_logprobs": N`` gets ``choices[0].logprobs.content``,
one entry per generated token::

    {"id": 34, "token": "2", "bytes": [50], "logprob": -1.19,
     "top_logprobs": [{"id": 34, "token": "2", "bytes": [50], "logprob": -1.19}, ...]}

Three facts shape this module:

- the listed alternatives come from the model *before* the JSON-schema grammar
  is applied: after a score digit they include ``","`` and ``"},"`` even where
  the grammar forbids them. Probabilities are therefore renormalised over the
  allowed score tokens, and the raw mass those tokens had is reported;
- the token stream can differ from the message text: the embedded server let
  SmolLM2 write a code fence (```` ```json\\n{...}\\n``` ````) and returned only
  the JSON as ``message.content``. Score positions are therefore found in the
  concatenated *tokens*, never by offsets into the message;
- ``"10"`` is two tokens (``"1"``, ``"0"``), so a scale whose values are one
  token each (:func:`digit_scale`: 0–9) is needed; a value that spans several
  tokens is reported as a :class:`LogprobGap`, never guessed.

Example:
    >>> entries = [
    ...     {"token": '{"', "logprob": 0.0, "top_logprobs": []},
    ...     {"token": "a", "logprob": 0.0, "top_logprobs": []},
    ...     {"token": '":', "logprob": 0.0, "top_logprobs": []},
    ...     {"token": "7", "logprob": -0.5, "top_logprobs": [
    ...         {"token": "7", "logprob": -0.5}, {"token": ",", "logprob": -1.5},
    ...         {"token": "8", "logprob": -1.5}]},
    ...     {"token": "}", "logprob": 0.0, "top_logprobs": []},
    ... ]
    >>> [s] = expected_scores(entries, ["a"], digit_scale()).values()
    >>> round(s.expected, 3), s.chosen, round(s.mass, 3), s.missing[:3]
    (7.269, 7.0, 0.83, ('0', '1', '2'))
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RECOMMENDED_TOP_LOGPROBS = 20
"""Alternatives to request per token.

Measured with SmolLM2-135M on the score prompt (12 score positions, schema
0..9): the ten digits were always the ten most likely tokens and held 99.9 %
of the raw mass; five alternatives covered 64-75 % of the digit mass, ten
covered all of it. 20 leaves a margin and is the most OpenAI's API (and vLLM's default
``--max-logprobs``) accept; asking for the whole vocabulary (49,152) made generation about
three times slower.
"""


class MissingLogprobsError(ValueError):
    """The answer carries no token log-probabilities."""


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its log-probability and the listed alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...]
    raw: bytes


@dataclass(frozen=True)
class ExpectedScore:
    """The distribution of one score value, renormalised over the allowed tokens.

    ``probabilities`` maps each allowed token that was listed to its
    renormalised probability; ``mass`` is the raw probability the allowed
    tokens had together (before renormalising; 1.0 means the model put all its
    mass on valid values). ``missing`` lists allowed tokens that were not among
    the alternatives, and ``unlisted_bound`` bounds their total raw
    probability: each is at most the smallest listed alternative, and all of
    them at most the mass the listed alternatives leave.
    """

    key: str
    token_index: int
    chosen: float
    expected: float
    probabilities: Mapping[str, float]
    mass: float
    missing: tuple[str, ...]
    unlisted_bound: float


@dataclass(frozen=True)
class LogprobGap:
    """A score whose distribution could not be read, with the reason code.

    Codes: ``no_logprobs``, ``key_not_found``, ``value_not_found``,
    ``value_shares_token`` (the value token also holds other text, e.g. ``'":7'``),
    ``multi_token_value`` (e.g. ``"1"`` then ``"0"``), ``value_not_allowed``,
    ``no_allowed_alternative``.
    """

    key: str
    reason: str
    detail: str = ""


def digit_scale(low: int = 0, high: int = 9) -> dict[str, float]:
    """The single-token score scale ``low..high`` (digits only), token text → value.

    Example:
        >>> digit_scale(1, 5)
        {'1': 1.0, '2': 2.0, '3': 3.0, '4': 4.0, '5': 5.0}
        >>> digit_scale(0, 10)
        Traceback (most recent call last):
        ...
        ValueError: a single-token digit scale lies within 0..9, got 0..10
    """
    if not 0 <= low < high <= 9:
        raise ValueError(f"a single-token digit scale lies within 0..9, got {low}..{high}")
    return {str(v): float(v) for v in range(low, high + 1)}


def with_logprobs(body: Mapping[str, Any], top: int = RECOMMENDED_TOP_LOGPROBS) -> dict[str, Any]:
    """A copy of an OpenAI chat body that asks for log-probabilities with ``top`` alternatives.

    ``top`` must be at least 1: xllamacpp answers ``top_logprobs: 0`` without any
    log-probabilities, and raises ``ValueError`` for ``top_logprobs`` without
    ``logprobs: true``.

    Example:
        >>> with_logprobs({"messages": []}, 20)
        {'messages': [], 'logprobs': True, 'top_logprobs': 20}
    """
    if top < 1:
        raise ValueError(f"top_logprobs must be >= 1, got {top}")
    return {**body, "logprobs": True, "top_logprobs": top}


def logprob_content(answer: Mapping[str, Any]) -> list[TokenLogprob]:
    """The per-token entries of an OpenAI chat answer (or of its ``choices[0]``).

    Raises :class:`MissingLogprobsError` when the answer has none, and
    ``ValueError`` when an entry is malformed.

    Example:
        >>> answer = {"choices": [{"message": {"content": "7"}, "logprobs": {"content": [
        ...     {"token": "7", "logprob": -0.1, "top_logprobs": [{"token": "7", "logprob": -0.1}]}
        ... ]}}]}
        >>> logprob_content(answer)[0].top
        (('7', -0.1),)
        >>> logprob_content({"choices": [{"message": {"content": "7"}}]})
        Traceback (most recent call last):
        ...
        dgprm.llm.logprobs.MissingLogprobsError: the answer has no logprobs.content
    """
    choice: Any = answer
    if "choices" in answer:
        choices = answer["choices"]
        if not choices:
            raise MissingLogprobsError("the answer has no choices")
        choice = choices[0]
    logprobs = choice.get("logprobs") if isinstance(choice, Mapping) else None
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not content:
        raise MissingLogprobsError("the answer has no logprobs.content")
    return parse_entries(content)


def parse_entries(content: Sequence[Mapping[str, Any]]) -> list[TokenLogprob]:
    """Validate raw ``logprobs.content`` entries into :class:`TokenLogprob` s.

    ``bytes`` (when present) rebuild the exact text, even where one token is
    half of a UTF-8 character.

    Example:
        >>> [e.raw for e in parse_entries([{"token": "é", "logprob": 0.0, "bytes": [195, 169]}])]
        [b'\\xc3\\xa9']
    """
    out: list[TokenLogprob] = []
    for i, entry in enumerate(content):
        try:
            token = str(entry["token"])
            logprob = float(entry["logprob"])
            top = tuple(
                (str(alt["token"]), float(alt["logprob"]))
                for alt in entry.get("top_logprobs") or ()
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"logprob entry {i} is malformed: {exc!r}") from None
        raw = bytes(entry["bytes"]) if entry.get("bytes") is not None else token.encode("utf-8")
        out.append(TokenLogprob(token, logprob, top, raw))
    return out


_WHITESPACE = b" \t\r\n"


def locate_values(
    entries: Sequence[TokenLogprob], keys: Sequence[str]
) -> dict[str, int | LogprobGap]:
    """For each JSON key, in order, the index of the token that holds its value.

    Keys are searched in the concatenated token bytes, each after the previous
    key's value (so a code fence before the JSON does no harm). The value must
    start a token (leading whitespace in the same token is allowed) and end in
    it; otherwise the key gets a :class:`LogprobGap`.

    Example:
        >>> texts = ['```json\\n{"', "a", '":', " ", "7", ',"', "b", '":', "1", "0",
        ...          ',"', "c", '":7}']
        >>> toks = parse_entries([{"token": t, "logprob": 0.0} for t in texts])
        >>> found = locate_values(toks, ["a", "b", "c", "d"])
        >>> found["a"], found["b"].reason, found["c"].reason, found["d"].reason
        (4, 'multi_token_value', 'value_shares_token', 'key_not_found')
    """
    stream = b"".join(e.raw for e in entries)
    starts: list[int] = []
    offset = 0
    for e in entries:
        starts.append(offset)
        offset += len(e.raw)
    found: dict[str, int | LogprobGap] = {}
    cursor = 0
    for key in keys:
        needle = json.dumps(key, ensure_ascii=False).encode("utf-8")
        at = stream.find(needle, cursor)
        if at < 0:
            found[key] = LogprobGap(key, "key_not_found", f"{needle.decode()} not in the tokens")
            continue
        pos = at + len(needle)
        while pos < len(stream) and stream[pos] in _WHITESPACE:
            pos += 1
        if pos >= len(stream) or stream[pos : pos + 1] != b":":
            found[key] = LogprobGap(key, "value_not_found", "no ':' after the key")
            cursor = at + len(needle)
            continue
        pos += 1
        while pos < len(stream) and stream[pos] in _WHITESPACE:
            pos += 1
        end = pos
        while end < len(stream) and stream[end : end + 1] not in (b",", b"}", b"]", b"\n", b" "):
            end += 1
        cursor = end
        if end == pos:
            found[key] = LogprobGap(key, "value_not_found", "empty value")
            continue
        index = _token_at(starts, pos)
        token_end = starts[index] + len(entries[index].raw)
        before = stream[starts[index] : pos]
        value = stream[pos:end].decode("utf-8", "replace")
        if before.strip(_WHITESPACE):
            found[key] = LogprobGap(
                key, "value_shares_token", f"value {value!r} is inside {entries[index].token!r}"
            )
        elif end > token_end:
            found[key] = LogprobGap(
                key, "multi_token_value", f"value {value!r} spans several tokens"
            )
        else:
            found[key] = index
    return found


def _token_at(starts: Sequence[int], pos: int) -> int:
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= pos:
            lo = mid
        else:
            hi = mid - 1
    return lo


def score_distribution(
    entry: TokenLogprob, allowed: Mapping[str, float], *, key: str = "", index: int = -1
) -> ExpectedScore | LogprobGap:
    """The expected value of one score token over the ``allowed`` tokens (text → value).

    The sampled token counts as an alternative even when it is not listed. A
    token matches an allowed value written bare or with the same leading
    whitespace as the sampled token (both are valid JSON at that position).

    Example:
        >>> e = TokenLogprob("3", math.log(0.5), (("3", math.log(0.5)), (",", math.log(0.3)),
        ...                                     ("4", math.log(0.1)), ("5", math.log(0.1))), b"3")
        >>> s = score_distribution(e, digit_scale(3, 5))
        >>> round(s.expected, 3), round(s.mass, 3), dict(s.probabilities)
        (3.429, 0.7, {'3': 0.714286, '4': 0.142857, '5': 0.142857})
        >>> score_distribution(e, digit_scale(6, 9)).reason
        'value_not_allowed'
    """
    chosen_text = entry.token
    bare = chosen_text.lstrip()
    lead = chosen_text[: len(chosen_text) - len(bare)]
    if bare not in allowed:
        return LogprobGap(key, "value_not_allowed", f"sampled {chosen_text!r}")
    listed: dict[str, float] = {}
    for token, logprob in ((chosen_text, entry.logprob), *entry.top):
        if token.lstrip() != token and token[: len(token) - len(token.lstrip())] != lead:
            continue
        value = token.lstrip()
        if value in allowed and token not in listed:
            listed[token] = logprob
    probs: dict[str, float] = {}
    for token, logprob in listed.items():
        p = math.exp(logprob) if math.isfinite(logprob) else 0.0
        probs[token.lstrip()] = probs.get(token.lstrip(), 0.0) + p
    mass = sum(probs.values())
    if mass <= 0.0:
        return LogprobGap(key, "no_allowed_alternative", "allowed tokens have zero probability")
    missing = tuple(t for t in allowed if t not in probs)
    shown = {entry.token: entry.logprob, **dict(entry.top)}
    rest = max(0.0, 1.0 - sum(math.exp(lp) for lp in shown.values() if math.isfinite(lp)))
    finite = [lp for _, lp in entry.top if math.isfinite(lp)]
    per_token = math.exp(min(finite)) if finite else 1.0
    bound = min(rest, per_token * len(missing)) if missing else 0.0
    normalised = {t: round(p / mass, 6) for t, p in sorted(probs.items(), key=lambda kv: kv[0])}
    expected = sum(allowed[t] * p for t, p in probs.items()) / mass
    return ExpectedScore(
        key=key,
        token_index=index,
        chosen=allowed[bare],
        expected=expected,
        probabilities=normalised,
        mass=min(1.0, mass),
        missing=missing,
        unlisted_bound=bound,
    )


def expected_scores(
    entries: Sequence[TokenLogprob] | Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    allowed: Mapping[str, float],
) -> dict[str, ExpectedScore | LogprobGap]:
    """Expected score of every JSON key in ``keys`` (in the order the schema writes them).

    ``entries`` are :class:`TokenLogprob` s or raw ``logprobs.content`` dicts.
    Every key gets an :class:`ExpectedScore` or an explicit :class:`LogprobGap`;
    with no entries at all every key is a ``no_logprobs`` gap.

    Example:
        >>> expected_scores([], ["a", "b"], digit_scale())["b"]
        LogprobGap(key='b', reason='no_logprobs', detail='the completion has no token entries')
    """
    if not entries:
        return {
            k: LogprobGap(k, "no_logprobs", "the completion has no token entries") for k in keys
        }
    parsed = [e if isinstance(e, TokenLogprob) else None for e in entries]
    tokens: list[TokenLogprob] = (
        parsed  # type: ignore[assignment]
        if all(p is not None for p in parsed)
        else parse_entries(entries)  # type: ignore[arg-type]
    )
    out: dict[str, ExpectedScore | LogprobGap] = {}
    for key, where in locate_values(tokens, keys).items():
        if isinstance(where, LogprobGap):
            out[key] = where
        else:
            out[key] = score_distribution(tokens[where], allowed, key=key, index=where)
    return out
