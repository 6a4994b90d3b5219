"""Expected scores from token log-probabilities, on hand-made distributions."""

from __future__ import annotations

import math

import pytest

from dgprm.llm.logprobs import (
    ExpectedScore,
    LogprobGap,
    MissingLogprobsError,
    digit_scale,
    expected_scores,
    locate_values,
    logprob_content,
    parse_entries,
    score_distribution,
    with_logprobs,
)


def entry(token: str, p: float, alternatives: dict[str, float] | None = None) -> dict:
    """A raw ``logprobs.content`` entry with probabilities given as plain numbers."""
    alts = alternatives if alternatives is not None else {token: p}
    return {
        "token": token,
        "logprob": math.log(p),
        "top_logprobs": [{"token": t, "logprob": math.log(q)} for t, q in alts.items()],
    }


def fixed(*tokens: str) -> list[dict]:
    return [entry(t, 1.0) for t in tokens]


def answer_tokens(scores: dict[str, dict]) -> list[dict]:
    """Tokens of ``{"scores": {"k": v, ...}}`` with the given value entries."""
    out = fixed('{"', "scores", '":', " {")
    for i, (key, value) in enumerate(scores.items()):
        out += fixed('"' if i == 0 else ', "', key, '":', " ")
        out.append(value)
    out += fixed("}}")
    return out


def test_renormalises_over_allowed_tokens_only() -> None:
    # the listed alternatives ignore the grammar: "," and "}," cannot follow here
    value = entry("7", 0.4, {"7": 0.4, ",": 0.2, "8": 0.2, "},": 0.1, "6": 0.1})
    tokens = answer_tokens({"c1": value})
    [score] = expected_scores(tokens, ["c1"], digit_scale()).values()
    assert isinstance(score, ExpectedScore)
    assert score.chosen == 7.0
    assert score.probabilities == pytest.approx({"6": 1 / 7, "7": 4 / 7, "8": 2 / 7}, abs=1e-6)
    assert score.expected == pytest.approx((6 * 0.1 + 7 * 0.4 + 8 * 0.2) / 0.7)
    assert score.mass == pytest.approx(0.7)
    assert set(score.missing) == {"0", "1", "2", "3", "4", "5", "9"}


def test_missing_allowed_tokens_are_reported_with_a_bound() -> None:
    value = entry("9", 0.6, {"9": 0.6, "8": 0.3, "x": 0.05})
    score = score_distribution(parse_entries([value])[0], digit_scale(5, 9), key="k")
    assert isinstance(score, ExpectedScore)
    assert score.missing == ("5", "6", "7")
    # each unlisted token has at most p = 0.05 (the smallest listed), and at most 0.05 is left
    assert score.unlisted_bound == pytest.approx(0.05)
    assert score.expected == pytest.approx((9 * 0.6 + 8 * 0.3) / 0.9)


def test_full_coverage_has_no_missing_and_no_bound() -> None:
    alts = {str(v): 0.1 for v in range(10)}
    score = score_distribution(parse_entries([entry("3", 0.1, alts)])[0], digit_scale())
    assert isinstance(score, ExpectedScore)
    assert score.missing == () and score.unlisted_bound == 0.0
    assert score.expected == pytest.approx(4.5)
    assert score.mass == pytest.approx(1.0)


def test_sampled_token_counts_even_when_not_listed() -> None:
    value = {
        "token": "2",
        "logprob": math.log(0.2),
        "top_logprobs": [{"token": "3", "logprob": 0.0}],
    }
    score = score_distribution(parse_entries([value])[0], digit_scale())
    assert isinstance(score, ExpectedScore)
    assert score.probabilities == pytest.approx({"2": 0.2 / 1.2, "3": 1 / 1.2}, abs=1e-6)


def test_whitespace_variants_follow_the_sampled_token() -> None:
    alts = {" 4": 0.5, "4": 0.2, " 5": 0.2, "  6": 0.1}
    score = score_distribution(parse_entries([entry(" 4", 0.5, alts)])[0], digit_scale())
    assert isinstance(score, ExpectedScore)
    # " 4" and "4" are both the value 4; "  6" has other whitespace than the sampled token
    assert score.probabilities == pytest.approx({"4": 0.7 / 0.9, "5": 0.2 / 0.9}, abs=1e-6)
    bare = score_distribution(parse_entries([entry("4", 0.5, alts)])[0], digit_scale())
    assert isinstance(bare, ExpectedScore)
    assert bare.probabilities == {"4": 1.0}


def test_letter_scale() -> None:
    letters = {"A": 1.0, "B": 2.0, "C": 3.0}
    score = score_distribution(
        parse_entries([entry("B", 0.5, {"B": 0.5, "C": 0.5})])[0], letters, key="k"
    )
    assert isinstance(score, ExpectedScore) and score.expected == pytest.approx(2.5)


def test_several_keys_in_order_and_a_code_fence_before_the_json() -> None:
    tokens = fixed("```", "json", "\n") + answer_tokens(
        {"a": entry("2", 0.5, {"2": 0.5, "3": 0.5}), "b": entry("9", 1.0)}
    )
    scores = expected_scores(tokens, ["a", "b"], digit_scale())
    a, b = scores["a"], scores["b"]
    assert isinstance(a, ExpectedScore) and isinstance(b, ExpectedScore)
    assert a.expected == pytest.approx(2.5) and b.expected == pytest.approx(9.0)
    assert tokens[a.token_index]["token"] == "2" and tokens[b.token_index]["token"] == "9"


def test_key_that_also_appears_inside_another_key_name() -> None:
    tokens = answer_tokens({"p1/c1": entry("3", 1.0), "c1": entry("6", 1.0)})
    scores = expected_scores(tokens, ["p1/c1", "c1"], digit_scale())
    assert [s.chosen for s in scores.values() if isinstance(s, ExpectedScore)] == [3.0, 6.0]


def test_unicode_keys_and_split_utf8_bytes() -> None:
    raw = [
        {"token": '{"', "logprob": 0.0, "bytes": list(b'{"')},
        {"token": "\ufffd", "logprob": 0.0, "bytes": [0xC3]},  # first half of "é"
        {"token": "\ufffd", "logprob": 0.0, "bytes": [0xA9]},
        {"token": '":', "logprob": 0.0, "bytes": list(b'":')},
        entry("5", 1.0),
        {"token": "}", "logprob": 0.0},
    ]
    [score] = expected_scores(raw, ["é"], digit_scale()).values()
    assert isinstance(score, ExpectedScore) and score.chosen == 5.0


def test_multi_token_value_is_a_gap_not_a_guess() -> None:
    tokens = answer_tokens({"a": entry("1", 0.9)})
    tokens.insert(-1, entry("0", 0.8))  # "10" is "1" then "0"
    [gap] = expected_scores(tokens, ["a"], digit_scale()).values()
    assert isinstance(gap, LogprobGap) and gap.reason == "multi_token_value"


def test_value_sharing_a_token_with_the_colon_is_a_gap() -> None:
    tokens = fixed('{"', "a", '":7', "}")
    found = locate_values(parse_entries(tokens), ["a"])
    assert isinstance(found["a"], LogprobGap) and found["a"].reason == "value_shares_token"


def test_missing_key_is_a_gap_and_other_keys_still_score() -> None:
    tokens = answer_tokens({"a": entry("4", 1.0)})
    scores = expected_scores(tokens, ["a", "b"], digit_scale())
    assert isinstance(scores["a"], ExpectedScore)
    assert isinstance(scores["b"], LogprobGap) and scores["b"].reason == "key_not_found"


def test_value_outside_the_scale_is_a_gap() -> None:
    tokens = answer_tokens({"a": entry("true", 1.0)})
    [gap] = expected_scores(tokens, ["a"], digit_scale()).values()
    assert isinstance(gap, LogprobGap) and gap.reason == "value_not_allowed"


def test_zero_probability_everywhere_is_a_gap() -> None:
    value = {"token": "3", "logprob": float("-inf"), "top_logprobs": []}
    gap = score_distribution(parse_entries([value])[0], digit_scale())
    assert isinstance(gap, LogprobGap) and gap.reason == "no_allowed_alternative"


def test_no_logprobs_at_all() -> None:
    scores = expected_scores([], ["a", "b"], digit_scale())
    assert all(isinstance(s, LogprobGap) and s.reason == "no_logprobs" for s in scores.values())
    with pytest.raises(MissingLogprobsError):
        logprob_content({"choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}]})
    with pytest.raises(MissingLogprobsError):
        logprob_content({"choices": [{"message": {}, "logprobs": {"content": []}}]})
    with pytest.raises(MissingLogprobsError):
        logprob_content({"choices": []})


def test_logprob_content_reads_the_openai_shape() -> None:
    answer = {
        "choices": [{"message": {"content": "7"}, "logprobs": {"content": [entry("7", 0.5)]}}]
    }
    [token] = logprob_content(answer)
    assert token.token == "7" and token.logprob == pytest.approx(math.log(0.5))
    assert logprob_content(answer["choices"][0]) == [token]


def test_malformed_entry_is_an_error() -> None:
    with pytest.raises(ValueError, match="entry 1"):
        parse_entries([entry("a", 1.0), {"token": "b"}])


def test_digit_scale_refuses_multi_token_values() -> None:
    assert list(digit_scale()) == [str(v) for v in range(10)]
    with pytest.raises(ValueError):
        digit_scale(0, 10)


def test_with_logprobs_needs_at_least_one_alternative() -> None:
    body = with_logprobs({"messages": [], "temperature": 0}, 50)
    assert body["logprobs"] is True and body["top_logprobs"] == 50
    with pytest.raises(ValueError):
        with_logprobs({}, 0)
