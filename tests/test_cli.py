"""The command line on bad input: one-line error naming file/line/field, exit 2, nothing written."""

import json
import subprocess
import sys

import pytest

from tests.conftest import SAMPLES


def dgprm(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "dgprm", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"id": "a", "question": "q", "chosen": ["x"], "rejected": ["y"]}\n{bad json\n',
            "pairs.jsonl:2: malformed JSON",
        ),
        (
            '{"id": "a", "question": "q", "chosen": ["x"], "rejected": ["x"]}\n',
            "pairs.jsonl:1: field '(record)': chosen is identical to rejected",
        ),
        (
            '{"id": "a", "chosen": ["x"], "rejected": ["y"]}\n',
            "pairs.jsonl:1: field 'question': Field required",
        ),
    ],
)
def test_tree_build_bad_input(tmp_path, content, message):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(content)
    result = dgprm("tree", "build", pairs, "-o", tmp_path / "tree", "--cache", tmp_path / "c.db")
    assert result.returncode == 2
    assert message in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
    assert not (tmp_path / "tree").exists()


def test_tree_show_refuses_a_corrupted_tree(tmp_path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "tree.json").write_text("{}")
    result = dgprm("tree", "show", tmp_path / "tree")
    assert result.returncode == 2 and "missing embeddings.npy" in result.stderr


def test_bad_setting_in_config_file(tmp_path):
    config = tmp_path / "dgprm.toml"
    config.write_text("xi = -1\n")
    result = dgprm(
        "tree", "build", SAMPLES / "pairs.jsonl", "-o", tmp_path / "t", "--config", config
    )
    assert result.returncode == 2 and "field 'xi'" in result.stderr


def test_prmbench_pairs_folds_partition_the_questions(tmp_path):
    source = SAMPLES / "prmbench_records.jsonl"
    outputs = []
    for fold in (0, 1):
        out = tmp_path / f"fold{fold}.jsonl"
        assert dgprm("data", "prmbench-pairs", source, "-o", out, "--fold", fold).returncode == 0
        outputs.append([json.loads(line) for line in out.read_text().splitlines()])
    every = tmp_path / "all.jsonl"
    dgprm("data", "prmbench-pairs", source, "-o", every)
    all_pairs = [json.loads(line) for line in every.read_text().splitlines()]
    assert sorted(p["id"] for p in outputs[0] + outputs[1]) == sorted(p["id"] for p in all_pairs)
    questions = [{p["question"] for p in fold} for fold in outputs]
    assert not questions[0] & questions[1]
    assert all(p["chosen"] != p["rejected"] for p in all_pairs)
    assert not any(p["id"].startswith("multi_solutions") for p in all_pairs)


def test_help_lists_commands():
    result = dgprm("--help")
    assert result.returncode == 0 and "tree" in result.stdout and "data" in result.stdout


def test_version_is_the_installed_one():
    from importlib.metadata import version

    result = dgprm("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"dgprm {version('dgprm')}"


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_inside_a_command_exits_130_with_a_message(monkeypatch, tmp_path, capsys):
    from dgprm import cli
    from dgprm.tree import RewardTree

    monkeypatch.setattr(RewardTree, "load", _interrupt)  # Ctrl-C while the tree loads
    monkeypatch.setattr(sys, "argv", ["dgprm", "tree", "show", str(tmp_path)])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == 130
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tree", "show", "--no-such-option"], "No such option: --no-such-option"),
        (["tree", "build"], "Missing argument 'pairs'"),
        (["train", "p.jsonl", "--model", "m", "-o", "o", "--save-steps", "-1"], "--save-steps"),
    ],
)
def test_usage_errors_are_a_message_and_exit_2_not_a_traceback(args, message):
    result = dgprm(*args)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr
