"""dgprm — Dynamic and Generalizable Process Reward Modeling (Yin et al., ACL 2025).

Score the steps of a trajectory from a saved reward tree in three lines::

    import dgprm
    scorer = dgprm.StepScorer.from_tree("runs/tree", llm="embedded")
    rewards = scorer.score("What is 12 + 30?", ["12 + 30 = 42.", "So the answer is 42."])

The curated API:

- **Reward trees** — :func:`build_tree` / :func:`abuild_tree` (preference pairs → tree),
  :func:`add_to_tree` / :func:`aadd_to_tree`, :class:`RewardTree` (load, save, inspect);
- **Step scoring** — :class:`StepScorer` (``score`` / ``ascore``), :class:`StepReward`,
  :func:`score_file` / :func:`ascore_file` (a JSONL file into a resumable output);
- **Pareto pairs and DPO** — :func:`make_pairs` / :func:`amake_pairs`, :func:`train_dpo`;
- **Benchmarks** — :mod:`dgprm.bench.prmbench` and :mod:`dgprm.bench.processbench`
  (``run`` / ``arun``);
- **Configuration** — :class:`RuntimeConfig`, :class:`TreeConfig`, :class:`ScoringConfig`,
  :class:`PairsConfig`, :class:`TrainConfig`, :class:`RewardConfig`, :class:`ServeConfig`,
  :class:`Settings` (all of them, with a file);
- **Serving** — :mod:`dgprm.serve` (``create_app``), :mod:`dgprm.integrations.trl`
  (``DGPRMReward``), :mod:`dgprm.integrations.verl` (``compute_score``);
- **Models** — :func:`make_client` (an LLM client from a spec: ``embedded``, ``gguf:PATH``,
  ``openai:URL#MODEL``, ``hf:DIR``), :func:`make_backend`, :func:`make_embedder`.

Everything heavy (torch, transformers, llama.cpp) is imported only when it is used.
"""

from dgprm.config import (
    PairsConfig,
    RewardConfig,
    RuntimeConfig,
    ScoringConfig,
    ServeConfig,
    Settings,
    TrainConfig,
    TreeConfig,
)
from dgprm.embed import make_embedder
from dgprm.errors import InputError
from dgprm.llm import LLMClient, make_backend, make_client
from dgprm.pairs import amake_pairs, make_pairs
from dgprm.scoring import StepReward, StepScorer, ascore_file, score_file
from dgprm.tree import RewardTree, aadd_to_tree, abuild_tree, add_to_tree, build_tree
from dgprm.version import __version__


def train_dpo(*args, **kwargs):  # noqa: ANN002, ANN003 - the signature is dgprm.train's
    """Step-wise DPO with TRL (see :func:`dgprm.train.train_dpo`; imports TRL on call)."""
    from dgprm.train import train_dpo as train

    return train(*args, **kwargs)


__all__ = [
    "InputError",
    "LLMClient",
    "PairsConfig",
    "RewardConfig",
    "RewardTree",
    "RuntimeConfig",
    "ScoringConfig",
    "ServeConfig",
    "Settings",
    "StepReward",
    "StepScorer",
    "TrainConfig",
    "TreeConfig",
    "__version__",
    "aadd_to_tree",
    "abuild_tree",
    "add_to_tree",
    "amake_pairs",
    "ascore_file",
    "build_tree",
    "make_backend",
    "make_client",
    "make_embedder",
    "make_pairs",
    "score_file",
    "train_dpo",
]
