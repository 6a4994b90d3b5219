"""Step-wise DPO through TRL on a tiny, randomly initialised model with SmolLM2's tokenizer
(the ``tiny_model`` fixture in conftest). Checks the learning signal and the saved output."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

from dgprm.train import (  # noqa: E402
    TrainOptions,
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
    options = TrainOptions(max_steps=6, learning_rate=5e-3, batch_size=4)
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


def test_lora_adapter_is_saved_and_reloads(tiny_model, pairs_file, tmp_path):
    from peft import AutoPeftModelForCausalLM

    out = tmp_path / "lora"
    options = TrainOptions(lora=True, lora_rank=4, max_steps=3, learning_rate=1e-2)
    summary = train_dpo(pairs_file, str(tiny_model), out, options)
    assert summary["lora"] and (out / "adapter_config.json").is_file()
    model = AutoPeftModelForCausalLM.from_pretrained(str(out))
    assert any("lora_" in name for name, _ in model.named_parameters())


def test_pairs_export_columns_are_what_training_reads(pairs_file):
    rows = read_dpo_rows(pairs_file)
    assert rows[0] == {k: ROWS[0][k] for k in ("prompt", "chosen", "rejected")}
