"""The reward tree artifact: ``tree.json`` + ``embeddings.npy`` + ``manifest.json``.

No pickle anywhere: JSON for structure and provenance, ``.npy`` (loaded with
``allow_pickle=False``) for vectors, and SHA-256 checksums in the manifest so
a truncated or edited artifact is refused on load.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dgprm.errors import InputError
from dgprm.files import file_sha256, user_mode

TREE_FORMAT = 1
FILES = ("tree.json", "embeddings.npy", "manifest.json")
ORIGINS = ("built", "human")


class TreeError(InputError):
    """A missing, truncated or inconsistent reward-tree artifact."""


@dataclass
class Criterion:
    """One criterion written by the judge (its cleaned text), with the deterministic quality
    gate's verdict and the validator's: ``kept`` only when both keep it.

    ``gate`` is ``None`` when the gate passed it, else the rejection ``{"reason", "message"}``
    (see :mod:`dgprm.tree.quality`; the validator never saw it); ``raw`` is the text as the
    judge wrote it when cleaning changed it; ``reason`` is the validator's reason.
    """

    id: str
    pair_id: str
    title: str
    description: str
    kept: bool
    reason: str = ""
    child: str | None = None
    origin: str = "built"  # "human": written by a person (``dgprm tree apply``), no pair
    gate: dict[str, Any] | None = None
    raw: str | None = None

    @property
    def text(self) -> str:
        """``title: description``; a person-written criterion has no title, only its text.

        Example:
            >>> Criterion("h/1", "", "", "Units are stated", True, origin="human").text
            'Units are stated'
        """
        return f"{self.title}: {self.description}" if self.title else self.description


@dataclass
class Node:
    """A parent (coarse) or child (fine-grained) criterion of the tree.

    The fields after ``sources`` come from human edits (``dgprm tree apply``, see
    :mod:`dgprm.tree.edits`); trees written before them load with the defaults.
    ``disabled`` nodes are never selected or scored (nor, for a disabled parent, its
    children); ``weight`` is used by the weighted aggregation; ``merged_into`` names the
    child that took over this child's members (the node stays, disabled, so its id is
    never reused); ``edits`` lists what each applied edit file changed.

    Example:
        >>> node = Node("c0001", "child", "Units are stated", parent="p001", members=["x/0"])
        >>> node.active, node.edited, node.weight
        (True, False, 1.0)
    """

    id: str
    level: Literal["parent", "child"]
    text: str
    parent: str | None = None
    children: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    disabled: bool = False
    weight: float = 1.0
    origin: str = "built"
    merged_into: str | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """Whether the node may be selected and scored (its parent's flag aside)."""
        return not self.disabled and self.merged_into is None

    @property
    def edited(self) -> bool:
        """Whether a person changed or wrote this node."""
        return bool(self.edits) or self.origin == "human"

    @property
    def counts(self) -> dict[str, int]:
        return {
            "children": len(self.children),
            "members": len(self.members),
            "sources": len(self.sources),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "counts": self.counts}


def _check_edit_fields(node: Node, index: dict[str, Node]) -> None:
    """Refuse ill-typed or inconsistent edit fields (``disabled``, ``weight``, …) on ``node``."""
    where = f"tree.json: node {node.id}"
    if not isinstance(node.disabled, bool):
        raise TreeError(f"{where}: 'disabled' must be true or false")
    weight = node.weight
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
        raise TreeError(f"{where}: 'weight' must be a finite number")
    if weight <= 0:
        raise TreeError(f"{where}: 'weight' must be > 0 (disable a node to switch it off)")
    if node.origin not in ORIGINS:
        raise TreeError(f"{where}: unknown origin {node.origin!r}")
    if not isinstance(node.edits, list) or not all(isinstance(e, dict) for e in node.edits):
        raise TreeError(f"{where}: 'edits' must be a list of objects")
    if node.merged_into is not None:
        target = index.get(node.merged_into)
        if node.level != "child" or target is None or target.level != "child":
            raise TreeError(f"{where}: merged into {node.merged_into!r}, which is not a child")
        if target.merged_into is not None or target.id == node.id:
            raise TreeError(f"{where}: merged into {target.id}, which is itself merged")
        if not node.disabled or node.members:
            raise TreeError(f"{where}: a merged child must be disabled and have no members")


@dataclass
class RewardTree:
    """Parents and children with provenance, plus one embedding row per node and kept criterion.

    ``vectors[i]`` belongs to ``nodes[i]``; ``vectors[len(nodes) + j]`` to the
    ``j``-th kept criterion. A child's row is its centroid (the BIRCH linear sum
    divided by the member count); a parent's row is the centroid of its
    children's unit directions.
    """

    nodes: list[Node]
    criteria: list[Criterion]
    vectors: np.ndarray
    manifest: dict[str, Any]
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def parents(self) -> list[Node]:
        return [n for n in self.nodes if n.level == "parent"]

    @property
    def children(self) -> list[Node]:
        return [n for n in self.nodes if n.level == "child"]

    @property
    def kept_criteria(self) -> list[Criterion]:
        return [c for c in self.criteria if c.kept]

    def node(self, node_id: str) -> Node:
        return self._index()[node_id]

    def selectable_ids(self) -> set[str]:
        """Ids of the nodes the scorer may offer: active parents, and the active children
        of active parents (disabled and merged nodes, and the children of a disabled
        parent, are never selected or scored)."""
        index = self._index()
        return {
            n.id
            for n in self.nodes
            if n.active and (n.level == "parent" or index[str(n.parent)].active)
        }

    def _index(self) -> dict[str, Node]:
        return {n.id: n for n in self.nodes}

    def node_vectors(self, ids: list[str]) -> np.ndarray:
        """Unit direction of each named node."""
        row = {n.id: i for i, n in enumerate(self.nodes)}
        rows = self.vectors[[row[i] for i in ids]].astype(np.float32)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms == 0, 1.0, norms)

    @property
    def embedder(self) -> str:
        return str(self.manifest.get("embedder", ""))

    def check_embedder(self, model_id: str) -> None:
        """Refuse an embedder other than the one the tree's vectors were made with."""
        if self.embedder != model_id:
            raise TreeError(
                f"tree was built with embedder {self.embedder!r} but {model_id!r} is "
                "configured; pass the tree's --embedder"
            )

    def check(self) -> None:
        """Raise :class:`TreeError` unless the structure is self-consistent."""
        index = self._index()
        if len(index) != len(self.nodes):
            raise TreeError("tree.json: duplicate node ids")
        kept = sum(c.kept for c in self.criteria)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.nodes) + kept:
            raise TreeError(
                f"embeddings.npy: expected {len(self.nodes) + kept} rows (nodes + kept criteria), "
                f"found shape {self.vectors.shape}"
            )
        if not np.isfinite(self.vectors).all():
            raise TreeError("embeddings.npy: non-finite values")
        criterion_ids = {c.id for c in self.criteria}
        for node in self.nodes:
            _check_edit_fields(node, index)
            if node.level == "child":
                if node.parent not in index or index[node.parent].level != "parent":
                    raise TreeError(f"tree.json: child {node.id} has no valid parent")
                if node.id not in index[node.parent].children:
                    raise TreeError(f"tree.json: parent {node.parent} does not list {node.id}")
                missing = [m for m in node.members if m not in criterion_ids]
                if missing or (not node.members and node.merged_into is None):
                    raise TreeError(f"tree.json: child {node.id} has unknown or no members")
            elif node.level == "parent":
                for child in node.children:
                    if child not in index or index[child].parent != node.id:
                        raise TreeError(f"tree.json: parent {node.id} lists bad child {child}")
            else:
                raise TreeError(f"tree.json: node {node.id} has unknown level {node.level!r}")

    # ---- persistence -------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the artifact atomically (a temp directory renamed into place)."""
        self.check()
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        tmp.chmod(user_mode(directory=True))
        try:
            tree_json = json.dumps(
                {
                    "format": TREE_FORMAT,
                    "nodes": [n.to_dict() for n in self.nodes],
                    "criteria": [asdict(c) for c in self.criteria],
                    "errors": self.errors,
                },
                ensure_ascii=False,
                indent=1,
            ).encode("utf-8")
            (tmp / "tree.json").write_bytes(tree_json)
            np.save(tmp / "embeddings.npy", self.vectors.astype(np.float32), allow_pickle=False)
            manifest = dict(self.manifest)
            manifest["files"] = {name: file_sha256(tmp / name) for name in FILES[:2]}
            manifest["counts"] = {
                "parents": len(self.parents),
                "children": len(self.children),
                "criteria": len(self.criteria),
                "kept_criteria": sum(c.kept for c in self.criteria),
                "errors": len(self.errors),
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            self.manifest = manifest
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(directory, old)
                os.replace(tmp, directory)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> RewardTree:
        """Load and validate an artifact; refuse anything missing, truncated or inconsistent."""
        directory = Path(directory)
        if not directory.is_dir():
            raise TreeError(f"{directory}: not a reward-tree directory")
        for name in FILES:
            if not (directory / name).is_file():
                raise TreeError(f"{directory}: missing {name}")
        try:
            manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as exc:
            raise TreeError(f"{directory / 'manifest.json'}: unreadable: {exc}") from None
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise TreeError(
                f"{directory / 'manifest.json'}: not a tree manifest (no checksums of the files)"
            )
        for name, digest in files.items():
            if file_sha256(directory / name) != digest:
                raise TreeError(f"{directory / name}: checksum mismatch (truncated or modified)")
        if set(manifest.get("files", {})) != set(FILES[:2]):
            raise TreeError(f"{directory / 'manifest.json'}: no checksums for the tree files")
        try:
            data = _TreeFile.model_validate_json((directory / "tree.json").read_bytes())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(file)"
            raise TreeError(f"{directory / 'tree.json'}: field '{where}': {first['msg']}") from None
        try:
            vectors = np.load(directory / "embeddings.npy", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            reason = exc or "empty file"
            raise TreeError(f"{directory / 'embeddings.npy'}: unreadable: {reason}") from None
        tree = cls(data.nodes, data.criteria, vectors, manifest, data.errors)
        tree.check()
        return tree


class _TreeFile(BaseModel):
    """``tree.json`` as read: every field of every node and criterion of its exact JSON type
    (strict: ``"kept": "yes"`` is refused, not read as true)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    format: int = TREE_FORMAT
    nodes: list[Node]
    criteria: list[Criterion]
    errors: list[dict[str, Any]] = Field(default_factory=list)


def text_by_person(node: Node) -> bool:
    """Whether a person wrote or changed the node's text (``tree add`` keeps such texts).

    Example:
        >>> text_by_person(Node("c1", "child", "t", edits=[{"op": "text", "version": 1}]))
        True
    """
    return node.origin == "human" or any(e.get("op") == "text" for e in node.edits)


def tree_embedder_spec(tree: RewardTree | None, explicit: str | None = None) -> str:
    """The embedder spec to use with ``tree``: ``explicit`` when given, else the one the
    tree was built with (``minilm`` for a new tree or one that does not say).

    Example:
        >>> tree_embedder_spec(None), tree_embedder_spec(None, "st:/models/e5")
        ('minilm', 'st:/models/e5')
    """
    if explicit:
        return explicit
    return str(tree.manifest.get("embedder_spec", "minilm")) if tree is not None else "minilm"
