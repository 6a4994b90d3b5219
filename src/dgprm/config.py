"""One config object per stage, with help text on every field (TRL's habit).

- :class:`RuntimeConfig` — models, concurrency, cache and input limits shared by every command;
- :class:`TreeConfig` — building a reward tree (ξ, parent ξ, criteria per pair);
- :class:`ScoringConfig` — dynamic step scoring (μ, ζ, aggregation, threshold, mode);
- :class:`PairsConfig` — sampling candidate steps for Pareto pairs;
- :class:`TrainConfig` — step-wise DPO;
- :class:`RewardConfig` — one reward per solution for RL (``dgprm serve``, TRL, verl);
- :class:`ServeConfig` — the HTTP reward server.

Defaults are written here once: the command line takes its defaults and help from these
fields. :class:`Settings` groups them and loads an optional TOML file (``--config``), flags
winning over the file and the file over the defaults. In the file, top-level keys set the
fields of the runtime, tree and scoring configs (each name is unique among them); the
sections ``[runtime]``, ``[tree]``, ``[scoring]``, ``[pairs]``, ``[train]``, ``[reward]`` and
``[serve]`` set one config.

Example:
    >>> s = Settings().merged(tree={"xi": 0.3})
    >>> s.tree.xi, s.scoring.zeta, s.scoring.mu
    (0.3, 0.2, 20)
    >>> scoring = ScoringConfig(agg="min").replace(threshold=0.7, mu=None)
    >>> scoring.agg, scoring.threshold, scoring.mu
    ('min', 0.7, 20)
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dgprm.errors import InputError

C = TypeVar("C", bound="StageConfig")
Mode = Literal["dynamic", "static", "no-tree"]
StepAggregation = Literal["mean", "min", "weighted"]
SolutionAggregation = Literal["min", "last", "prod", "mean"]


def cache_dir() -> Path:
    """dgprm's cache directory: ``$XDG_CACHE_HOME/dgprm`` (``~/.cache/dgprm``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dgprm"


def default_cache_path() -> Path:
    """``$DGPRM_CACHE`` or ``~/.cache/dgprm/llm-cache.sqlite``."""
    if os.environ.get("DGPRM_CACHE"):
        return Path(os.environ["DGPRM_CACHE"])
    return cache_dir() / "llm-cache.sqlite"


def _first_error(exc: ValidationError) -> InputError:
    first = exc.errors()[0]
    name = ".".join(str(part) for part in first["loc"]) or "(config)"
    return InputError(f"setting '{name}': {first['msg']}")


class StageConfig(BaseModel):
    """Base of every config: validated on assignment, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def replace(self: C, **changes: Any) -> C:
        """A validated copy with every change that is not ``None`` applied."""
        data = {**self.model_dump(), **{k: v for k, v in changes.items() if v is not None}}
        try:
            return type(self).model_validate(data)
        except ValidationError as exc:
            raise _first_error(exc) from None


class RuntimeConfig(StageConfig):
    """Models, concurrency, cache and input limits shared by every command."""

    llm: str = Field(
        "embedded",
        description="LLM: 'embedded' (SmolLM2-135M, in process), 'gguf:PATH', "
        "'openai:BASE_URL#MODEL' or 'hf:DIR' (a Hugging Face model or dgprm LoRA adapter).",
    )
    embedder: str | None = Field(
        None,
        description="Embedder: 'minilm' (all-MiniLM-L6-v2), 'st:PATH' or "
        "'openai:BASE_URL#MODEL'. Default: the tree's own (minilm for a new tree).",
    )
    concurrency: int = Field(4, ge=1, description="LLM calls in flight at once.")
    timeout: float = Field(
        120.0,
        gt=0,
        description="Seconds one request to a model server may take (chat and embeddings).",
    )
    cache: str | None = Field(
        None, description="SQLite response cache (default $DGPRM_CACHE or ~/.cache/dgprm)."
    )
    seed: int = Field(0, description="Seed of every judge call.")
    repeat_penalty: float = Field(
        1.0,
        gt=0,
        description="llama.cpp repetition penalty of the judge (1: off). Measured on the "
        "embedded judge: 1.3 put JSON debris into criteria, so it is off by default.",
    )
    frequency_penalty: float = Field(
        0.0, description="OpenAI-style frequency penalty of the judge (0: off)."
    )
    presence_penalty: float = Field(
        0.0, description="OpenAI-style presence penalty of the judge (0: off)."
    )
    dry_multiplier: float = Field(
        0.0,
        ge=0,
        description="llama.cpp DRY repetition penalty of the judge (0: off; 0.8 turned the "
        "embedded judge's copies of the prompt into paraphrases, not into usable criteria).",
    )
    temperature: float = Field(0.0, ge=0, description="Sampling temperature of the judge.")
    max_chars: int = Field(20_000, ge=100, description="Longest accepted input text.")
    on_long: Literal["error", "truncate"] = Field(
        "error", description="What to do with a longer text: refuse it or truncate it."
    )

    @property
    def cache_path(self) -> Path:
        return Path(self.cache) if self.cache else default_cache_path()

    @property
    def sampling(self) -> dict[str, float]:
        """The sampling controls that differ from their neutral value (sent with every
        request and part of its cache key; none by default, so any server accepts them).

        Example:
            >>> RuntimeConfig().sampling, RuntimeConfig(dry_multiplier=0.8).sampling
            ({}, {'dry_multiplier': 0.8})
        """
        neutral = {
            "repeat_penalty": 1.0,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
            "dry_multiplier": 0.0,
        }
        return {k: getattr(self, k) for k, v in neutral.items() if getattr(self, k) != v}


class TreeConfig(StageConfig):
    """Building a reward tree (METHOD.md §1)."""

    xi: float = Field(
        0.25, gt=0, lt=2, description="ξ: criteria within this cosine distance form one child."
    )
    parent_xi: float = Field(
        0.6, gt=0, lt=2, description="Children within this cosine distance share a parent."
    )
    max_criteria: int = Field(4, ge=1, le=16, description="Criteria the judge writes per pair.")


class ScoringConfig(StageConfig):
    """Dynamic step scoring (METHOD.md §2)."""

    mu: int = Field(20, ge=0, description="μ: previous steps kept as context.")
    zeta: float = Field(
        0.2, gt=0, lt=2, description="ζ: children within this cosine distance of an aspect match."
    )
    prefilter_parents: int = Field(
        8, ge=1, description="Parents offered to R (most similar by embedding) in a large tree."
    )
    agg: StepAggregation = Field(
        "min",
        description="Step reward from its vector: min (a step that clearly breaks one "
        "criterion is a wrong step) | mean | weighted (by the criterion weights a person set "
        "with dgprm tree apply).",
    )
    threshold: float = Field(
        0.5, ge=0, le=1, description="A step is labelled correct when its reward > threshold."
    )
    score_mode: Literal["expected", "sample"] = Field(
        "expected",
        description="S's scores: expected (the mean of the model's distribution over the "
        "score tokens 0-9, read from token log-probabilities) or sample (the integer it "
        "wrote). A backend without log-probabilities falls back to sample, with a warning.",
    )
    mode: Mode = Field(
        "dynamic",
        description="dynamic (R → Φ → ζ-match → S), static (every parent, ablation) or "
        "no-tree (a plain critic on one generic criterion, ablation).",
    )
    merge_r_phi: bool = Field(
        False, description="One LLM call for R and Φ (2 calls per step instead of 3)."
    )


class PairsConfig(StageConfig):
    """Sampling candidate next steps for Pareto preference pairs (METHOD.md §3)."""

    n: int = Field(4, ge=1, description="Candidates sampled per prefix.")
    temperature: float = Field(0.8, ge=0, description="Policy sampling temperature.")
    seed: int = Field(0, description="Seed of the first candidate (+1 per candidate).")
    conversational: bool = Field(
        False, description="Write prompt/chosen/rejected as chat messages."
    )


class TrainConfig(StageConfig):
    """Step-wise DPO with TRL's DPOTrainer."""

    beta: float = Field(0.1, gt=0, description="DPO β.")
    lora: bool = Field(False, description="Train a LoRA adapter (peft) instead of every weight.")
    lora_rank: int = Field(8, ge=1, description="LoRA rank.")
    epochs: float = Field(1.0, gt=0, description="Training epochs.")
    max_steps: int = Field(-1, ge=-1, description="Stop after N steps (-1: epochs decide).")
    learning_rate: float = Field(5e-6, gt=0, description="Learning rate.")
    batch_size: int = Field(4, ge=1, description="Pairs per device batch.")
    max_length: int = Field(512, ge=8, description="Longest prompt + step in tokens.")
    seed: int = Field(0, description="Training seed.")
    save_steps: int = Field(
        200, ge=0, description="Checkpoint every N steps (the latest is kept; 0: never)."
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Training precision. auto: bf16 where the device computes it natively "
        "(CUDA with bf16, a CPU with AVX512-BF16/AMX), fp16 on other CUDA GPUs, else fp32.",
    )


class RewardConfig(StageConfig):
    """One reward per solution for RL, from its step rewards (``dgprm serve``, TRL, verl).

    Example:
        >>> RewardConfig().agg, RewardConfig().on_error is None
        ('min', True)
    """

    tree: str | None = Field(
        None, description="Reward tree directory (for the TRL and verl entry points)."
    )
    agg: SolutionAggregation = Field(
        "min", description="Solution reward from its step rewards: min | last | prod | mean."
    )
    step_sep: str | None = Field(
        None,
        description="Separator that cuts a response into steps (default: 'Step N:' labels "
        "when present, else blank lines, else lines).",
    )
    on_error: float | None = Field(
        None,
        description="Reward given to a solution whose scoring failed (default: none; the "
        "failure is reported). Every use is counted.",
    )
    question_key: str = Field(
        "question", description="verl: the key of a sample's extra_info that holds the question."
    )


class ServeConfig(StageConfig):
    """The HTTP reward server (``dgprm serve``)."""

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on (0: any free one).")
    api_key_env: str | None = Field(
        None,
        description="Environment variable holding the bearer key every request but "
        "/health must carry (default: no key).",
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest accepted request body (larger: 413)."
    )
    max_items: int = Field(
        1024, ge=1, description="Most items (queries) in one request (more: 422)."
    )
    access_log: bool = Field(True, description="Log one line per request (never the key).")


SECTIONS: dict[str, type[StageConfig]] = {
    "runtime": RuntimeConfig,
    "tree": TreeConfig,
    "scoring": ScoringConfig,
    "pairs": PairsConfig,
    "train": TrainConfig,
    "reward": RewardConfig,
    "serve": ServeConfig,
}
#: Top-level keys of a config file belong to these sections (their field names are unique).
FLAT_SECTIONS = ("runtime", "tree", "scoring")


class Settings(StageConfig):
    """Every stage's config, as one object a command loads.

    Example:
        >>> Settings().runtime.llm, Settings().tree.xi
        ('embedded', 0.25)
    """

    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="Shared settings.")
    tree: TreeConfig = Field(default_factory=TreeConfig, description="Tree building.")
    scoring: ScoringConfig = Field(default_factory=ScoringConfig, description="Step scoring.")
    pairs: PairsConfig = Field(default_factory=PairsConfig, description="Pareto pairs.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="DPO training.")
    reward: RewardConfig = Field(default_factory=RewardConfig, description="RL rewards.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="Reward server.")

    def merged(self, **sections: dict[str, Any] | None) -> Settings:
        """A copy with the non-``None`` values of ``sections`` (name → overrides) applied."""
        for name in sections:
            if name not in SECTIONS:
                raise InputError(f"unknown settings section {name!r}")
        return Settings(
            **{name: getattr(self, name).replace(**(sections.get(name) or {})) for name in SECTIONS}
        )

    @classmethod
    def load(cls, path: str | Path | None = None, **sections: dict[str, Any] | None) -> Settings:
        """Defaults, then the TOML file at ``path`` (if any), then ``sections`` overrides."""
        settings = cls()
        if path is not None:
            settings = cls._from_file(Path(path))
        return settings.merged(**sections)

    @classmethod
    def _from_file(cls, path: Path) -> Settings:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: no such config file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: invalid TOML: {exc}") from None
        data = data.get("dgprm", data)
        grouped: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        owner = {f: s for s in FLAT_SECTIONS for f in SECTIONS[s].model_fields}
        for key, value in data.items():
            if key in SECTIONS and isinstance(value, dict):
                grouped[key].update(value)
            elif key in owner:
                grouped[owner[key]][key] = value
            else:
                raise InputError(f"{path}: field '{key}': unknown setting")
        try:
            return cls.model_validate(grouped)
        except ValidationError as exc:
            first = exc.errors()[0]
            section, name = (str(part) for part in (*first["loc"], "")[:2])
            flat = name in data and section in FLAT_SECTIONS  # written as a top-level key
            shown = name if flat else f"{section}.{name}".rstrip(".")
            raise InputError(f"{path}: field '{shown}': {first['msg']}") from None
