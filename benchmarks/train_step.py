"""Seconds per DPO step on the embedded model (SmolLM2-135M de-quantised from the packaged
GGUF, LoRA), per training precision, so a regression like TRL's bf16 default on a CPU
without native bf16 (571 s for one step instead of about 20 s) shows.

Usage: python benchmarks/train_step.py [--precisions auto,fp32] [--steps 3] [--model embedded]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from dgprm.config import TrainConfig
from dgprm.train import resolve_precision, train_dpo

ROWS = [
    {
        "prompt": f"What is {a} + {b}?\nStep 1:",
        "chosen": f" {a} + {b} = {a + b}.",
        "rejected": f" {a} + {b} = {a + b + 1}.",
    }
    for a, b in [(2, 3), (4, 1), (6, 2), (3, 3), (7, 5), (9, 1), (8, 8), (5, 4)]
]


def step_timer():
    """A TrainerCallback recording the wall time of every optimizer step."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003
            self.marks.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003
            self.marks[-1] = time.perf_counter() - self.marks[-1]

    return StepTimer()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", default="auto,fp32")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--model", default="embedded")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dgprm-train-bench-"))
    pairs = work / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    results = []
    for choice in args.precisions.split(","):
        config = TrainConfig(
            lora=True, max_steps=args.steps, batch_size=4, save_steps=0, precision=choice
        )
        timer = step_timer()
        train_dpo(pairs, args.model, work / f"out-{choice}", config, callbacks=[timer])
        steps = sorted(timer.marks)
        results.append((choice, resolve_precision(choice), len(steps), steps[len(steps) // 2]))
    baseline = next((r[3] for r in results if r[1] == "fp32"), None)
    print("| precision | resolved | steps | median s/step | vs fp32 |")
    print("|---|---|---|---|---|")
    for choice, resolved, count, median in results:
        ratio = f"{median / baseline:.2f}×" if baseline else "–"
        print(f"| {choice} | {resolved} | {count} | {median:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
