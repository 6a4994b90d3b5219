"""One settings object for every command: hyper-parameters, models, concurrency.

Values come from defaults, then an optional TOML file (``--config``), then CLI
flags, later sources winning.

Example:
    >>> s = Settings().merged({"xi": 0.3})
    >>> s.xi, s.zeta, s.mu
    (0.3, 0.2, 20)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dgprm.records import InputError


def default_cache_path() -> Path:
    """``$DGPRM_CACHE`` or ``~/.cache/dgprm/llm-cache.sqlite``."""
    if os.environ.get("DGPRM_CACHE"):
        return Path(os.environ["DGPRM_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "dgprm" / "llm-cache.sqlite"


class Settings(BaseModel):
    """Every knob of dgprm, with the paper's values as defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    xi: float = Field(
        0.25, gt=0, lt=2, description="merge threshold (cosine distance) for children"
    )
    parent_xi: float = Field(
        0.6, gt=0, lt=2, description="cosine distance within which children share a parent"
    )
    zeta: float = Field(0.2, gt=0, lt=2, description="child matching threshold (cosine distance)")
    mu: int = Field(20, ge=0, description="previous steps kept as context")
    llm: str = Field("embedded", description="LLM spec: embedded | gguf:PATH | openai:URL#MODEL")
    embedder: str = Field(
        "minilm", description="embedder spec: minilm | st:PATH | openai:URL#MODEL"
    )
    concurrency: int = Field(4, ge=1, description="LLM calls in flight at once")
    seed: int = 0
    temperature: float = Field(0.0, ge=0)
    max_chars: int = Field(20_000, ge=100, description="longest accepted input text")
    on_long: Literal["error", "truncate"] = "error"
    max_criteria: int = Field(4, ge=1, le=16, description="criteria the judge writes per pair")
    prefilter_parents: int = Field(8, ge=1, description="parents shown to R after embedding filter")
    agg: Literal["mean", "min"] = "mean"
    threshold: float = Field(0.5, ge=0, le=1, description="step is valid when reward > threshold")
    cache: str | None = Field(None, description="SQLite cache path (default: ~/.cache/dgprm)")

    def merged(self, overrides: dict[str, Any]) -> Settings:
        """A copy with every non-None override applied and validated."""
        data = self.model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return Settings.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InputError(f"setting '{first['loc'][0]}': {first['msg']}") from None

    @classmethod
    def load(cls, path: str | Path | None, overrides: dict[str, Any] | None = None) -> Settings:
        """Defaults, then the TOML file at ``path`` (if any), then ``overrides``."""
        settings = cls()
        if path is not None:
            path = Path(path)
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise InputError(f"{path}: no such config file") from None
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"{path}: invalid TOML: {exc}") from None
            data = data.get("dgprm", data)
            try:
                settings = cls.model_validate(data)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise InputError(f"{path}: field '{first['loc'][0]}': {first['msg']}") from None
        return settings.merged(overrides or {})

    @property
    def cache_path(self) -> Path:
        return Path(self.cache) if self.cache else default_cache_path()
