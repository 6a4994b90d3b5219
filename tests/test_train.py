"""Step-wise DPO through TRL on a tiny, randomly initialised model with SmolLM2's tokenizer
(the ``tiny_model`` fixture in conftest). Checks the learning signal and the saved output."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")
pytestmark = pytest.mark.slow

from transformers import TrainerCallback  # noqa: E402

from dgprm.config import TrainConfig  # noqa: E402
from dgprm.errors import InputError  # noqa: E402
from dgprm.train import (  # noqa: E402
    implicit_margin,
    load_policy,
    read_dpo_rows,
    train_dpo,
)

ROWS = [
    {
        "prompt": f"What is {a}+{b}?\nStep 1:",
        "chosen": f" {a}+{b} = {a + b}.",
        "rejected": f" {a}+{b} = {a + b + 1}.",
        "margin": 0.5,
        "prefix_id": f"q{a}",
    }
    for a, b in [(2, 3), (4, 1), (6, 2), (3, 3)]
]


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_dpo_increases_the_implicit_reward_margin_and_the_output_reloads(
    tiny_model, pairs_file, tmp_path
):
    out = tmp_path / "dpo"
    options = TrainConfig(max_steps=6, learning_rate=5e-3, batch_size=4)
    summary = train_dpo(pairs_file, str(tiny_model), out, options)
    assert summary["steps"] == 6
    assert summary["first_margin"] == pytest.approx(0.0, abs=1e-6)  # policy starts as the ref
    assert summary["last_margin"] > 0.05 and summary["last_loss"] < summary["first_loss"]
    log = json.loads((out / "training_log.json").read_text())
    assert log["summary"]["pairs"] == 4 and not (out.parent / "dpo.partial").exists()
    trained, tokenizer = load_policy(str(out))
    reference, _ = load_policy(str(tiny_model))
    margins = [implicit_margin(trained, reference, tokenizer, r, 0.1) for r in ROWS]
    assert min(margins) > 0  # every chosen step gained on its rejected twin


class _StopAt(TrainerCallback):
    """Kills training when it reaches ``step`` (after the checkpoints of earlier steps)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("killed")


def _logged_losses(out):
    log = json.loads((out / "training_log.json").read_text())["log_history"]
    return [entry["loss"] for entry in log if "loss" in entry]


def test_an_interrupted_run_resumes_from_its_checkpoint_and_ends_where_an_unbroken_one_does(
    tiny_model, pairs_file, tmp_path
):
    # two batches per epoch: the checkpoint after step 1 is mid-epoch, so resuming must
    # restore the data order and skip the batch already seen
    options = TrainConfig(max_steps=4, learning_rate=5e-3, batch_size=2, save_steps=1)
    unbroken = train_dpo(pairs_file, str(tiny_model), tmp_path / "unbroken", options)
    out = tmp_path / "dpo"
    with pytest.raises(RuntimeError, match="killed"):
        train_dpo(pairs_file, str(tiny_model), out, options, callbacks=[_StopAt(2)])
    checkpoints = tmp_path / "dpo.partial" / "checkpoints"
    assert [p.name for p in checkpoints.glob("checkpoint-*")] == ["checkpoint-1"]
    (checkpoints / "checkpoint-2").mkdir()  # a run killed while saving leaves a partial one
    (checkpoints / "checkpoint-2" / "model.safetensors").write_bytes(b"")
    assert not out.exists()
    resumed = train_dpo(pairs_file, str(tiny_model), out, options)
    assert resumed["resumed_from_step"] == 1 and unbroken["resumed_from_step"] is None
    assert resumed["steps"] == 4 and not (tmp_path / "dpo.partial").exists()
    assert _logged_losses(out) == pytest.approx(_logged_losses(tmp_path / "unbroken"), rel=1e-5)


def test_a_checkpoint_of_other_settings_is_refused_not_thrown_away(
    tiny_model, pairs_file, tmp_path
):
    out = tmp_path / "dpo"
    options = TrainConfig(max_steps=3, learning_rate=5e-3, batch_size=2, save_steps=2)
    with pytest.raises(RuntimeError, match="killed"):
        train_dpo(pairs_file, str(tiny_model), out, options, callbacks=[_StopAt(3)])
    options.learning_rate = 1e-3
    with pytest.raises(InputError, match=r"\(checkpoint-2\) with another --learning-rate"):
        train_dpo(pairs_file, str(tiny_model), out, options)
    assert (tmp_path / "dpo.partial" / "checkpoints" / "checkpoint-2").is_dir()


def test_a_partial_run_without_a_checkpoint_is_replaced(tiny_model, pairs_file, tmp_path):
    out = tmp_path / "dpo"
    options = TrainConfig(max_steps=3, learning_rate=5e-3, batch_size=2, save_steps=2)
    with pytest.raises(RuntimeError, match="killed"):
        train_dpo(pairs_file, str(tiny_model), out, options, callbacks=[_StopAt(1)])
    options.learning_rate = 1e-3
    summary = train_dpo(pairs_file, str(tiny_model), out, options)
    assert summary["resumed_from_step"] is None and summary["steps"] == 3


def test_a_finished_output_is_reused_by_the_same_run_and_never_replaced(
    tiny_model, pairs_file, tmp_path
):
    out = tmp_path / "dpo"
    options = TrainConfig(max_steps=1, batch_size=2)
    first = train_dpo(pairs_file, str(tiny_model), out, options)
    weights = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = train_dpo(pairs_file, str(tiny_model), out, options)
    assert again["already_trained"] and again["last_loss"] == first["last_loss"]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == weights  # untouched
    with pytest.raises(InputError, match="holds a training with another --max-steps"):
        train_dpo(pairs_file, str(tiny_model), out, TrainConfig(max_steps=2, batch_size=2))
    (tmp_path / "notes").mkdir()
    with pytest.raises(InputError, match="records no dgprm training run"):
        train_dpo(pairs_file, str(tiny_model), tmp_path / "notes", options)
    (tmp_path / "notes" / "training_log.json").write_text('{"run": {}}')  # no summary
    with pytest.raises(InputError, match="records no dgprm training run"):
        train_dpo(pairs_file, str(tiny_model), tmp_path / "notes", options)


def test_lora_adapter_is_saved_and_reloads(tiny_model, pairs_file, tmp_path):
    from peft import AutoPeftModelForCausalLM

    out = tmp_path / "lora"
    options = TrainConfig(lora=True, lora_rank=4, max_steps=3, learning_rate=1e-2)
    summary = train_dpo(pairs_file, str(tiny_model), out, options)
    assert summary["lora"] and (out / "adapter_config.json").is_file()
    model = AutoPeftModelForCausalLM.from_pretrained(str(out))
    assert any("lora_" in name for name, _ in model.named_parameters())


def test_pairs_export_columns_are_what_training_reads(pairs_file):
    rows = read_dpo_rows(pairs_file)
    assert rows[0] == {k: ROWS[0][k] for k in ("prompt", "chosen", "rejected")}
