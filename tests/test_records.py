import json

import pytest

from dgprm.errors import InputError
from dgprm.files import write_jsonl
from dgprm.records import PreferencePair, Trajectory, read_records
from dgprm.runs import ResumableJsonl


def _write(tmp_path, lines, name="in.jsonl"):
    path = tmp_path / name
    path.write_bytes(
        b"".join(line if isinstance(line, bytes) else line.encode() + b"\n" for line in lines)
    )
    return path


GOOD = json.dumps({"id": "a", "question": "q", "chosen": ["x"], "rejected": ["y"]})


def test_reads_valid_pairs_with_string_or_list_steps(tmp_path):
    other = json.dumps({"id": "b", "question": "q", "chosen": "x", "rejected": "y", "domain": "m"})
    pairs = read_records(_write(tmp_path, [GOOD, "", other]), PreferencePair)
    assert [p.id for p in pairs] == ["a", "b"]
    assert pairs[1].chosen_steps == ["x"] and pairs[1].domain == "m"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"id": "a", "question": "q", "chosen": ["x"]', "in.jsonl:2: malformed JSON"),
        (
            '{"id": "a", "question": "q", "chosen": ["x"]}',
            "in.jsonl:2: field 'rejected': Field required",
        ),
        (
            '{"id": "a", "question": "  ", "chosen": ["x"], "rejected": ["y"]}',
            "in.jsonl:2: field 'question': question is empty",
        ),
        (
            '{"id": "a", "question": "q", "chosen": ["x"], "rejected": ["x"]}',
            "in.jsonl:2: field '(record)': chosen is identical to rejected",
        ),
        (
            '{"id": "a", "question": "q", "chosen": [], "rejected": ["x"]}',
            "in.jsonl:2: field 'chosen': chosen has no steps",
        ),
        (
            '{"id": "a", "question": "q", "chosen": ["x", ""], "rejected": ["y"]}',
            "in.jsonl:2: field 'chosen': chosen step 1 is empty",
        ),
        ("[1, 2]", "in.jsonl:2: expected a JSON object"),
        (GOOD, "in.jsonl:2: field 'id': duplicate id 'a'"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path, line, expected):
    with pytest.raises(InputError) as err:
        read_records(_write(tmp_path, [GOOD, line]), PreferencePair)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_invalid_utf8_names_the_line(tmp_path):
    with pytest.raises(InputError, match=r"in.jsonl:2: invalid UTF-8"):
        read_records(_write(tmp_path, [GOOD, b'{"id": "\xff"}\n']), PreferencePair)


def test_over_long_text_is_refused_or_truncated(tmp_path):
    long = json.dumps({"id": "a", "question": "q" * 500, "chosen": ["x"], "rejected": ["y"]})
    path = _write(tmp_path, [long])
    with pytest.raises(InputError, match=r"in.jsonl:1: field 'question': text of 500"):
        read_records(path, PreferencePair, max_chars=100)
    with pytest.warns(UserWarning, match="truncated"):
        pairs = read_records(path, PreferencePair, max_chars=100, on_long="truncate")
    assert len(pairs[0].question) == 100


def test_empty_file_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="no records"):
        read_records(_write(tmp_path, [""]), Trajectory)
    with pytest.raises(InputError, match="no such file"):
        read_records(tmp_path / "nope.jsonl", Trajectory)


def test_trajectory_needs_steps(tmp_path):
    path = _write(tmp_path, ['{"id": "t", "question": "q", "steps": []}'])
    with pytest.raises(InputError, match="field 'steps': steps has no steps"):
        read_records(path, Trajectory)


def test_write_jsonl_is_atomic_on_failure(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")

    def rows():
        yield {"a": 1}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl(out, rows())
    assert out.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [out]


def test_resumable_output_drops_torn_line_and_reports_done(tmp_path):
    out = tmp_path / "scores.jsonl"
    out.write_text('{"id": "a", "v": 1}\n{"id": "b", "v"')
    with ResumableJsonl(out) as sink:
        assert sink.done == {"a"}
        sink.write({"id": "c", "v": 3})
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "c"]
