"""``dgprm train``: step-wise DPO with TRL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dgprm.cli.common import ConfigOpt, flag, load_settings, option, print_summary
from dgprm.config import TrainConfig


def train(
    pairs_file: Annotated[Path, typer.Argument(metavar="PAIRS", help="DPO pairs JSONL.")],
    model: Annotated[
        str, typer.Option(help="Policy: a model directory, a .gguf file, or 'embedded'.")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output directory.")],
    beta: Annotated[float | None, option(TrainConfig, "beta", "--beta")] = None,
    lora: Annotated[bool, flag(TrainConfig, "lora", "--lora")] = False,
    lora_rank: Annotated[int | None, option(TrainConfig, "lora_rank", "--lora-rank")] = None,
    epochs: Annotated[float | None, option(TrainConfig, "epochs", "--epochs")] = None,
    max_steps: Annotated[int | None, option(TrainConfig, "max_steps", "--max-steps")] = None,
    learning_rate: Annotated[
        float | None, option(TrainConfig, "learning_rate", "--learning-rate")
    ] = None,
    batch_size: Annotated[int | None, option(TrainConfig, "batch_size", "--batch-size")] = None,
    max_length: Annotated[int | None, option(TrainConfig, "max_length", "--max-length")] = None,
    seed: Annotated[int | None, option(TrainConfig, "seed", "--seed")] = None,
    save_steps: Annotated[int | None, option(TrainConfig, "save_steps", "--save-steps")] = None,
    precision: Annotated[str | None, option(TrainConfig, "precision", "--precision")] = None,
    config: ConfigOpt = None,
) -> None:
    """Step-wise DPO on preference pairs with TRL's DPOTrainer (CPU or CUDA, offline).

    Saves the model or LoRA adapter, its tokenizer and training_log.json to OUT. An
    interrupted run resumes from its latest checkpoint when the same command is run again.
    """
    from dgprm.train import train_dpo

    settings = load_settings(
        config,
        train={
            "beta": beta,
            "lora": lora or None,
            "lora_rank": lora_rank,
            "epochs": epochs,
            "max_steps": max_steps,
            "learning_rate": learning_rate,
            "batch_size": batch_size,
            "max_length": max_length,
            "seed": seed,
            "save_steps": save_steps,
            "precision": precision,
        },
    )
    summary = train_dpo(pairs_file, model, out, settings.train)
    rows = [
        (k, f"{v:.4f}" if isinstance(v, float) else str(v))
        for k, v in summary.items()
        if k != "options"
    ]
    print_summary("train", [*rows, ("output", str(out))])
