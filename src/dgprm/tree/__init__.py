"""Reward trees: build, load, save, add."""

from dgprm.tree.build import BuildReport, extend_tree
from dgprm.tree.cluster import birch_radius, cluster_new
from dgprm.tree.model import Criterion, Node, RewardTree, TreeError

__all__ = [
    "BuildReport",
    "Criterion",
    "Node",
    "RewardTree",
    "TreeError",
    "birch_radius",
    "cluster_new",
    "extend_tree",
]
