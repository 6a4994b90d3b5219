"""Reward trees: build from preference pairs, add to, load, save (METHOD.md §1).

- :mod:`.build` — judge → validator → embed → BIRCH → summarizer (:func:`build_tree`,
  :func:`add_to_tree`, their async twins, and :func:`extend_tree` under them);
- :mod:`.stages` — the LLM calls (judge, validator, summarizer) and their answer models;
- :mod:`.cluster` — BIRCH children and parents (pure numpy / scikit-learn);
- :mod:`.model` — the artifact (:class:`RewardTree`, :class:`Node`, :class:`Criterion`).
"""

from dgprm.tree.build import (
    BuildReport,
    aadd_to_tree,
    abuild_tree,
    add_to_tree,
    build_tree,
    extend_tree,
)
from dgprm.tree.cluster import birch_radius, cluster_new
from dgprm.tree.model import Criterion, Node, RewardTree, TreeError

__all__ = [
    "BuildReport",
    "Criterion",
    "Node",
    "RewardTree",
    "TreeError",
    "aadd_to_tree",
    "abuild_tree",
    "add_to_tree",
    "birch_radius",
    "build_tree",
    "cluster_new",
    "extend_tree",
]
