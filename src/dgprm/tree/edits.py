"""Human edits of a reward tree, reproducible: export to YAML, edit by hand, apply.

``export_yaml`` writes every parent with its children (ids, texts, weights, disabled
flags). A person edits that file, or writes a short one naming only what changes, and
``apply_edits`` applies it to the tree:

- change a node's ``text`` (the node is re-embedded with the tree's embedder);
- ``disabled: true`` / ``false`` switches a node off or on again (a disabled node is
  never selected or scored; a disabled parent takes its children with it);
- ``weight: 2.5`` sets the weight the weighted aggregation gives a criterion (> 0);
- list a child under another parent to move it there;
- ``merge_into: c0007`` on a child merges it into another child: its member criteria
  and source pairs move to ``c0007``; the merged child stays in the tree, disabled and
  marked ``merged_into``, so its id is never reused and old score files still resolve;
- a child entry without ``id`` (only ``text``, optionally ``weight``/``disabled``) adds
  a person-written criterion under that parent, embedded on apply, origin ``human``.

Nodes the file does not mention are left as they are; nothing is ever deleted. Node ids
never change, and new children take fresh ids. The file is read with a safe loader
(no tags that build objects), and every problem is reported as ``file:line: field
'…': …`` before anything changes: unknown ids, a parent placed under a parent, a merge
chain or cycle, duplicate entries, wrong types. Each applied file is recorded in the
manifest (``edits``: version, SHA-256 of the file, what changed) and on every node it
changed (``Node.edits``).

Example:
    >>> from dgprm.tree.model import Criterion, Node, RewardTree, TreeError, text_by_person
    >>> import numpy as np, pathlib, tempfile
    >>> tree = RewardTree(
    ...     [Node("p001", "parent", "Sound steps", children=["c0001"], members=["a/0"],
    ...           sources=["a"]),
    ...      Node("c0001", "child", "Arithmetic is right", parent="p001", members=["a/0"],
    ...           sources=["a"])],
    ...     [Criterion("a/0", "a", "Arithmetic", "is right", True, child="c0001")],
    ...     np.eye(3, dtype=np.float32), {"embedder": "test"})
    >>> print(export_yaml(tree).split("parents:")[1].strip())  # doctest: +NORMALIZE_WHITESPACE
    - id: "p001"
      text: "Sound steps"
      weight: 1.0
      disabled: false
      # 1 child, 1 criterion, 1 pair
      children:
      - id: "c0001"
        text: "Arithmetic is right"
        weight: 1.0
        disabled: false
        # 1 criterion from 1 pair
    >>> edits = pathlib.Path(tempfile.mkdtemp()) / "edits.yaml"
    >>> _ = edits.write_text(
    ...     "parents:\\n- id: p001\\n  children:\\n  - id: c0001\\n    weight: 2\\n")
    >>> new, report = apply_edits(tree, edits)
    >>> new.node("c0001").weight, report.changes, new.manifest["edits"][0]["version"]
    (2.0, {'weight': 1}, 1)
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dgprm.embed import Embedder
from dgprm.errors import InputError
from dgprm.files import atomic_path, check_not_an_input, check_output_dir
from dgprm.progress import counted
from dgprm.records import DEFAULT_MAX_CHARS
from dgprm.tree.model import Criterion, Node, RewardTree, TreeError, text_by_person

EDITS_FORMAT = 1
TOP_KEYS = ("format", "exported_from", "edit_version", "parents")
PARENT_KEYS = ("id", "text", "weight", "disabled", "children")
CHILD_KEYS = ("id", "text", "weight", "disabled", "merge_into")
HUMAN_PREFIX = "human/"

EmbedderSource = Embedder | Callable[[], Embedder] | None


class EditError(InputError):
    """A malformed or inapplicable edits file (``file:line: field '…': …``)."""


# ---- export --------------------------------------------------------------------------


def _scalar(value: str | float | bool) -> str:
    """One YAML scalar: texts double-quoted (every character escaped as YAML needs),
    numbers in a form YAML 1.1 reads back as a number.

    Example:
        >>> _scalar('says "no"'), _scalar(1e-05), _scalar(True)
        ('"says \\\\"no\\\\""', '1.0e-05', 'true')
    """
    if isinstance(value, str):
        return yaml.safe_dump(value, default_style='"', allow_unicode=True, width=1 << 30).strip()
    return yaml.safe_dump(value).removesuffix("\n...\n").strip()


def _node_lines(node: Node, indent: str) -> list[str]:
    lines = [
        f"{indent}- id: {_scalar(node.id)}",
        f"{indent}  text: {_scalar(node.text)}",
        f"{indent}  weight: {_scalar(float(node.weight))}",
        f"{indent}  disabled: {_scalar(node.disabled)}",
    ]
    if node.merged_into is not None:
        lines.append(f"{indent}  merge_into: {_scalar(node.merged_into)}")
    return lines


def export_yaml(tree: RewardTree) -> str:
    """The tree as a human-editable YAML file (read back by :func:`apply_edits`).

    Parents and children appear in the tree's order; comments give each node's counts
    and mark edited and person-written nodes.
    """
    index = {n.id: n for n in tree.nodes}
    digest = tree.manifest.get("files", {}).get("tree.json")
    out = [
        "# dgprm reward tree. Edit it, then apply it with",
        "#   dgprm tree apply TREE THIS_FILE -o NEW_TREE",
        "# - change a text (the node is re-embedded); set disabled: true / false;",
        "#   set weight (> 0, used by the weighted aggregation);",
        "# - move a child by listing it under another parent;",
        "# - merge a child into another with  merge_into: CHILD_ID;",
        "# - add a criterion: a child entry with only  text: ...  (no id).",
        "# Nodes left out of the file stay as they are; ids never change.",
        f"format: {EDITS_FORMAT}",
        *([f"exported_from: {_scalar(digest)}  # sha256 of tree.json"] if digest else []),
        f"edit_version: {len(tree.manifest.get('edits', []))}  # edit files applied so far",
        "parents:",
    ]
    for parent in tree.parents:
        out += _node_lines(parent, "")
        members = len(parent.members)
        note = (
            f"{counted(len(parent.children), 'child', 'children')}, "
            f"{counted(members, 'criterion', 'criteria')}, {counted(len(parent.sources), 'pair')}"
        )
        out.append(f"  # {note}{_edit_note(parent)}")
        out.append("  children:" if parent.children else "  children: []")
        for child_id in parent.children:
            child = index[child_id]
            out += _node_lines(child, "  ")
            note = (
                f"{counted(len(child.members), 'criterion', 'criteria')} from "
                f"{counted(len(child.sources), 'pair')}"
            )
            out.append(f"    # {note}{_edit_note(child)}")
    return "\n".join(out) + "\n"


def _edit_note(node: Node) -> str:
    note = describe_edits(node)
    return f"; {note}" if note else ""


def describe_edits(node: Node) -> str:
    """A short mark for an edited node (for ``tree show`` and the report), or ``""``.

    Example:
        >>> describe_edits(Node("c1", "child", "t", edits=[{"version": 1, "op": "text"},
        ...                                               {"version": 2, "op": "weight"}]))
        'edited: text (v1), weight (v2)'
        >>> describe_edits(Node("c2", "child", "t", origin="human", edits=[{"version": 1,
        ...                                                             "op": "add"}]))
        'written by a person (v1)'
    """
    ops = [e for e in node.edits if e.get("op") != "add"]
    parts = [f"{e.get('op')} (v{e.get('version')})" for e in ops]
    added = next((e for e in node.edits if e.get("op") == "add"), None)
    if node.origin == "human":
        head = f"written by a person (v{added['version']})" if added else "written by a person"
        return f"{head}; edited: {', '.join(parts)}" if parts else head
    return f"edited: {', '.join(parts)}" if parts else ""


def write_export(tree_dir: str | Path, out: str | Path) -> Path:
    """Load the tree at ``tree_dir`` and write :func:`export_yaml` to ``out`` (atomically).
    An existing file that is not such an export, or an input, is refused."""
    check_not_an_input(out, [tree_dir])
    existing = Path(out)
    if existing.exists() and (
        not existing.is_file() or "\nparents:" not in existing.read_text(errors="replace")
    ):
        raise InputError(
            f"{out}: exists and is not a dgprm tree export; dgprm does not replace a file it "
            "did not write (choose another -o)"
        )
    text = export_yaml(RewardTree.load(tree_dir))
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(out)


# ---- reading the file with line marks ------------------------------------------------


class _Map(dict):  # type: ignore[type-arg]
    """A mapping that remembers its line and the line of each value (1-based)."""

    line: int = 0
    value_lines: dict[str, int]


class _Seq(list):  # type: ignore[type-arg]
    """A sequence that remembers its line and the line of each item (1-based)."""

    line: int = 0
    item_lines: list[int]


class _LineError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


class _MarkedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with line numbers kept and duplicate keys refused."""


def _construct_map(loader: _MarkedLoader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    result = _Map()
    result.line = node.start_mark.line + 1
    result.value_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise _LineError(key_node.start_mark.line + 1, f"key {key!r} is not a name")
        if key in result:
            raise _LineError(key_node.start_mark.line + 1, f"duplicate key {key!r}")
        result[key] = loader.construct_object(value_node, deep=True)
        result.value_lines[key] = value_node.start_mark.line + 1
    return result


def _construct_seq(loader: _MarkedLoader, node: yaml.SequenceNode) -> _Seq:
    result = _Seq(loader.construct_object(item, deep=True) for item in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [item.start_mark.line + 1 for item in node.value]
    return result


_MarkedLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_MarkedLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _load(path: Path) -> tuple[_Map, str]:
    """Parse the edits file; return the top mapping and the file's SHA-256."""
    if not path.is_file():
        raise EditError(f"{path}: no such file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise EditError(f"{path}:{line}: invalid UTF-8 at byte {exc.start}") from None
    try:
        doc = yaml.load(text, Loader=_MarkedLoader)  # noqa: S506 - a SafeLoader subclass
    except _LineError as exc:
        raise EditError(f"{path}:{exc.line}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise EditError(f"{path}:{line}: malformed YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise EditError(f"{path}:1: malformed YAML: {exc}") from None
    if not isinstance(doc, _Map):
        raise EditError(f"{path}:1: expected a mapping with a 'parents' list")
    return doc, hashlib.sha256(raw).hexdigest()


# ---- validation: a plan of edits -----------------------------------------------------


@dataclass
class _Entry:
    """One parent or child entry of the file, checked."""

    field: str
    line: int
    lines: dict[str, int]
    level: str
    id: str | None
    parent: str | None  # the parent it is listed under (children)
    text: str | None = None
    weight: float | None = None
    disabled: bool | None = None
    merge_into: str | None = None


@dataclass
class _Plan:
    parents: list[_Entry] = field(default_factory=list)
    children: list[_Entry] = field(default_factory=list)


class _Checker:
    def __init__(self, path: Path, tree: RewardTree) -> None:
        self.path = path
        self.tree = tree
        self.index = {n.id: n for n in tree.nodes}

    def fail(self, line: int, where: str, message: str) -> EditError:
        return EditError(f"{self.path}:{line}: field '{where}': {message}")

    def mapping(self, value: Any, line: int, where: str, keys: tuple[str, ...]) -> _Map:
        if not isinstance(value, _Map):
            raise self.fail(line, where, "expected a mapping (key: value lines)")
        for key in value:
            if key not in keys:
                raise self.fail(
                    value.value_lines[key],
                    f"{where}.{key}" if where else key,
                    f"unknown key (allowed: {', '.join(keys)})",
                )
        return value

    def sequence(self, value: Any, line: int, where: str) -> _Seq:
        if value is None:
            empty = _Seq()
            empty.line, empty.item_lines = line, []
            return empty
        if not isinstance(value, _Seq):
            raise self.fail(line, where, "expected a list (lines starting with '- ')")
        return value

    def entry(self, item: Any, line: int, where: str, level: str, parent: str | None) -> _Entry:
        keys = PARENT_KEYS if level == "parent" else CHILD_KEYS
        m = self.mapping(item, line, where, keys)
        lines = {k: m.value_lines[k] for k in m}
        entry = _Entry(where, m.line, lines, level, None, parent)
        if "id" in m:
            entry.id = self.known_id(m["id"], lines["id"], f"{where}.id", level)
        elif level == "parent":
            raise self.fail(m.line, f"{where}.id", "missing (parents cannot be added)")
        if "text" in m:
            text = m["text"]
            if not isinstance(text, str) or not text.strip():
                raise self.fail(lines["text"], f"{where}.text", "expected a non-empty text")
            if len(text) > DEFAULT_MAX_CHARS:
                raise self.fail(
                    lines["text"], f"{where}.text", f"longer than {DEFAULT_MAX_CHARS} characters"
                )
            entry.text = text.strip()
        elif entry.id is None:
            raise self.fail(m.line, f"{where}.text", "missing (a new criterion needs a text)")
        if "weight" in m:
            weight = m["weight"]
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise self.fail(
                    lines["weight"], f"{where}.weight", f"expected a number, got {weight!r}"
                )
            if not math.isfinite(weight) or weight <= 0:
                raise self.fail(
                    lines["weight"],
                    f"{where}.weight",
                    f"must be a finite number > 0, got {weight!r} (use disabled: true "
                    "to switch a criterion off)",
                )
            entry.weight = float(weight)
        if "disabled" in m:
            if not isinstance(m["disabled"], bool):
                raise self.fail(
                    lines["disabled"],
                    f"{where}.disabled",
                    f"expected true or false, got {m['disabled']!r}",
                )
            entry.disabled = m["disabled"]
        if "merge_into" in m:
            if entry.id is None:
                raise self.fail(
                    lines["merge_into"], f"{where}.merge_into", "a new criterion cannot be merged"
                )
            entry.merge_into = self.known_id(
                m["merge_into"], lines["merge_into"], f"{where}.merge_into", "child"
            )
        return entry

    def known_id(self, value: Any, line: int, where: str, level: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(line, where, f"expected a node id, got {value!r}")
        node = self.index.get(value)
        if node is None:
            raise self.fail(line, where, f"unknown id {value!r} (not in this tree)")
        if node.level != level:
            if level == "child":
                raise self.fail(
                    line,
                    where,
                    f"{value} is a parent; a parent cannot be placed under a parent or "
                    "merged (that would make a cycle)",
                )
            raise self.fail(line, where, f"{value} is a child, listed here as a parent")
        return value

    def plan(self, doc: _Map) -> _Plan:
        self.mapping(doc, doc.line, "", TOP_KEYS)
        fmt = doc.get("format", EDITS_FORMAT)
        if isinstance(fmt, bool) or fmt != EDITS_FORMAT:
            raise self.fail(
                doc.value_lines["format"], "format", f"unsupported format {doc['format']!r}"
            )
        if "parents" not in doc:
            raise self.fail(doc.line, "parents", "missing")
        plan = _Plan()
        parents = self.sequence(doc["parents"], doc.value_lines["parents"], "parents")
        seen: dict[str, str] = {}
        texts: dict[tuple[str, str], str] = {}
        for i, item in enumerate(parents):
            where = f"parents[{i}]"
            entry = self.entry(item, parents.item_lines[i], where, "parent", None)
            assert entry.id is not None
            self.once(entry.id, entry, seen)
            plan.parents.append(entry)
            children = self.sequence(
                item.get("children"), entry.lines.get("children", entry.line), f"{where}.children"
            )
            for j, child_item in enumerate(children):
                child = self.entry(
                    child_item, children.item_lines[j], f"{where}.children[{j}]", "child", entry.id
                )
                if child.id is not None:
                    self.once(child.id, child, seen)
                else:
                    assert child.text is not None
                    self.new_text(child, entry.id, texts)
                plan.children.append(child)
        self.check_children(plan)
        return plan

    def once(self, node_id: str, entry: _Entry, seen: dict[str, str]) -> None:
        if node_id in seen:
            raise self.fail(
                entry.lines["id"],
                f"{entry.field}.id",
                f"{node_id} is listed twice ({seen[node_id]})",
            )
        seen[node_id] = f"first as {entry.field}, line {entry.lines['id']}"

    def new_text(self, entry: _Entry, parent: str, texts: dict[tuple[str, str], str]) -> None:
        assert entry.text is not None
        where = f"{entry.field}.text"
        key = (parent, entry.text.casefold())
        same = next(
            (
                c
                for c in self.index[parent].children
                if self.index[c].merged_into is None and self.index[c].text.casefold() == key[1]
            ),
            None,
        )
        if same is not None:
            raise self.fail(
                entry.lines["text"], where, f"{same} under {parent} already has this text"
            )
        if key in texts:
            raise self.fail(entry.lines["text"], where, f"the same text is added {texts[key]}")
        texts[key] = f"at line {entry.lines['text']}"

    def check_children(self, plan: _Plan) -> None:
        merges = {c.id: c for c in plan.children if c.id is not None and c.merge_into}
        for child in plan.children:
            if child.id is None:
                continue
            node = self.index[child.id]
            moved = child.parent != node.parent
            if node.merged_into is not None:
                self.check_tombstone(child, node, moved)
                continue
            if child.merge_into is None:
                continue
            where, line = f"{child.field}.merge_into", child.lines["merge_into"]
            target = self.index[child.merge_into]
            if target.id == node.id:
                raise self.fail(line, where, f"{node.id} cannot be merged into itself")
            if target.merged_into is not None:
                raise self.fail(
                    line,
                    where,
                    f"{target.id} was merged into {target.merged_into}; merge into "
                    "that child instead",
                )
            chained = merges.get(target.id)
            if chained is not None:
                raise self.fail(
                    line,
                    where,
                    f"{target.id} is itself merged (into {chained.merge_into}, line "
                    f"{chained.lines['merge_into']}): merges cannot chain or form a cycle",
                )
            if moved:
                raise self.fail(
                    child.lines["id"],
                    f"{child.field}.id",
                    f"{node.id} is merged, so it cannot also move (list it under {node.parent})",
                )
            changed = [
                k
                for k, new, old in (
                    ("text", child.text, node.text.strip()),
                    ("weight", child.weight, node.weight),
                )
                if new is not None and new != old
            ]
            if changed:
                raise self.fail(
                    child.lines[changed[0]],
                    f"{child.field}.{changed[0]}",
                    f"{node.id} is merged into {target.id}; its {changed[0]} cannot change too",
                )

    def check_tombstone(self, child: _Entry, node: Node, moved: bool) -> None:
        """A child merged earlier: only a restatement of what it already is is accepted."""
        if child.merge_into not in (None, node.merged_into):
            raise self.fail(
                child.lines["merge_into"],
                f"{child.field}.merge_into",
                f"{node.id} was already merged into {node.merged_into}",
            )
        if child.disabled is False:
            raise self.fail(
                child.lines["disabled"],
                f"{child.field}.disabled",
                f"{node.id} was merged into {node.merged_into}; it cannot be enabled again",
            )
        changed = [
            k
            for k, new, old in (
                ("text", child.text, node.text.strip()),
                ("weight", child.weight, node.weight),
            )
            if new is not None and new != old
        ]
        if moved or changed:
            key = "id" if moved else changed[0]
            raise self.fail(
                child.lines[key],
                f"{child.field}.{key}",
                f"{node.id} was merged into {node.merged_into}; it cannot be changed",
            )


# ---- applying ------------------------------------------------------------------------


@dataclass
class EditReport:
    """What one applied edits file changed."""

    version: int
    sha256: str
    changes: dict[str, int] = field(default_factory=dict)
    added: dict[str, str] = field(default_factory=dict)  # file field -> new child id

    def rows(self) -> list[tuple[str, str]]:
        changes = ", ".join(f"{op} {n}" for op, n in sorted(self.changes.items())) or "none"
        return [
            ("tree version", f"v{self.version}"),
            ("changes", changes),
            ("added", ", ".join(self.added.values()) or "none"),
            ("edits file sha256", self.sha256[:16]),
        ]


def _next_number(prefix: str, ids: list[str]) -> int:
    numbers = [
        int(i[len(prefix) :]) for i in ids if i.startswith(prefix) and i[len(prefix) :].isdigit()
    ]
    return max(numbers, default=0) + 1


def _resolve_embedder(embedder: EmbedderSource, tree: RewardTree, path: Path) -> Embedder:
    if embedder is None:
        raise EditError(f"{path}: new or changed texts need the tree's embedder to embed them")
    resolved = embedder if isinstance(embedder, Embedder) else embedder()
    try:
        tree.check_embedder(resolved.model_id)
    except TreeError as exc:
        raise EditError(str(exc)) from None
    return resolved


def _unit(row: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(row))
    return row / norm if norm > 0 else row


def apply_edits(
    tree: RewardTree,
    edits_path: str | Path,
    embedder: EmbedderSource = None,
    *,
    now: datetime | None = None,
) -> tuple[RewardTree, EditReport]:
    """Apply the edits file at ``edits_path`` to ``tree``; return the new tree and a report.

    ``tree`` is not modified, and nothing is written: save the result with
    :meth:`RewardTree.save`. ``embedder`` (or a function returning it, called only when
    a text is new or changed) must be the tree's. Raises :class:`EditError` naming the
    file, line and field for anything malformed or inapplicable.
    """
    path = Path(edits_path)
    doc, sha = _load(path)
    plan = _Checker(path, tree).plan(doc)
    version = len(tree.manifest.get("edits", [])) + 1

    nodes = [copy.deepcopy(n) for n in tree.nodes]
    criteria = [copy.deepcopy(c) for c in tree.criteria]
    index = {n.id: n for n in nodes}
    crit_index = {c.id: c for c in criteria}
    node_row = {n.id: tree.vectors[i].astype(np.float32) for i, n in enumerate(tree.nodes)}
    kept = [c.id for c in tree.criteria if c.kept]
    crit_row = {cid: tree.vectors[len(tree.nodes) + j] for j, cid in enumerate(kept)}

    changes: Counter[str] = Counter()
    to_embed: dict[str, str] = {}  # node id -> text to embed
    touched_parents: set[str] = set()
    recentre: set[str] = set()  # children whose row is their members' centroid again

    def record(node: Node, op: str, *, count: bool = True, **details: Any) -> None:
        node.edits.append({"version": version, "op": op, **details})
        if count:
            changes[op] += 1

    for entry in plan.parents + [c for c in plan.children if c.id is not None]:
        assert entry.id is not None
        node = index[entry.id]
        if entry.merge_into is not None or node.merged_into is not None:
            continue  # a merge (checked: no other change comes with it)
        if entry.text is not None and entry.text != node.text.strip():
            record(node, "text", was=node.text)
            node.text = entry.text
            to_embed[node.id] = node.text
            touched_parents.add(node.id if node.level == "parent" else str(node.parent))
        if entry.weight is not None and entry.weight != node.weight:
            record(node, "weight", was=node.weight, now=entry.weight)
            node.weight = entry.weight
        if entry.disabled is not None and entry.disabled != node.disabled:
            record(node, "disable" if entry.disabled else "enable")
            node.disabled = entry.disabled
            if node.level == "child":
                touched_parents.add(str(node.parent))

    for entry in plan.children:  # moves
        if entry.id is None or index[entry.id].merged_into is not None:
            continue
        node = index[entry.id]
        old, new = str(node.parent), str(entry.parent)
        if old != new:
            index[old].children.remove(node.id)
            index[new].children.append(node.id)
            node.parent = new
            record(node, "move", was=old, now=new)
            touched_parents |= {old, new}

    added: dict[str, str] = {}
    next_child = _next_number("c", [n.id for n in nodes])
    next_human = _next_number(HUMAN_PREFIX, [c.id for c in criteria])
    for entry in plan.children:  # additions
        if entry.id is not None:
            continue
        assert entry.text is not None and entry.parent is not None
        child_id, crit_id = f"c{next_child:04d}", f"{HUMAN_PREFIX}{next_human}"
        next_child, next_human = next_child + 1, next_human + 1
        criterion = Criterion(
            crit_id, "", "", entry.text, True, "written by a person", child_id, origin="human"
        )
        criteria.append(criterion)
        crit_index[crit_id] = criterion
        node = Node(
            child_id,
            "child",
            entry.text,
            parent=entry.parent,
            members=[crit_id],
            disabled=bool(entry.disabled),
            weight=entry.weight if entry.weight is not None else 1.0,
            origin="human",
        )
        record(node, "add")
        nodes.append(node)
        index[child_id] = node
        index[entry.parent].children.append(child_id)
        to_embed[child_id] = entry.text
        touched_parents.add(entry.parent)
        added[entry.field] = child_id

    for entry in plan.children:  # merges
        if entry.id is None or entry.merge_into is None or index[entry.id].merged_into:
            continue
        source, target = index[entry.id], index[entry.merge_into]
        target.members += source.members
        target.sources += [s for s in source.sources if s not in target.sources]
        for member in source.members:
            crit_index[member].child = target.id
        record(source, "merge", into=target.id)
        record(target, "absorb", count=False, source=source.id)
        source.members, source.sources = [], []
        source.merged_into, source.disabled = target.id, True
        touched_parents |= {str(source.parent), str(target.parent)}
        if not text_by_person(target):
            recentre.add(target.id)

    if to_embed:
        model = _resolve_embedder(embedder, tree, path)
        ids = sorted(to_embed)
        rows = np.asarray(model.encode([to_embed[i] for i in ids]), dtype=np.float32)
        for node_id, row in zip(ids, rows, strict=True):
            node_row[node_id] = row
            if index[node_id].origin == "human" and node_id in added.values():
                crit_row[index[node_id].members[0]] = row
    for child_id in recentre:
        members = index[child_id].members
        node_row[child_id] = np.mean([crit_row[m] for m in members], axis=0)
    for parent_id in touched_parents:
        parent = index[parent_id]
        children = [index[c] for c in parent.children]
        live = [c for c in children if c.active]
        if live and not text_by_person(parent):
            node_row[parent_id] = np.mean([_unit(node_row[c.id]) for c in live], axis=0)
        parent.members = [m for c in children for m in c.members]
        parent.sources = []
        for c in children:
            parent.sources += [s for s in c.sources if s not in parent.sources]

    kept_ids = [c.id for c in criteria if c.kept]
    vectors = np.concatenate(
        [
            np.stack([node_row[n.id] for n in nodes]),
            np.stack([crit_row[c] for c in kept_ids]).reshape(len(kept_ids), -1),
        ]
    ).astype(np.float32)
    manifest = copy.deepcopy(tree.manifest)
    stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    manifest["edits"] = [
        *manifest.get("edits", []),
        {
            "version": version,
            "file": str(path),
            "sha256": sha,
            "applied_at": stamp,
            "changes": dict(sorted(changes.items())),
            "added": sorted(added.values()),
        },
    ]
    new_tree = RewardTree(nodes, criteria, vectors, manifest, copy.deepcopy(tree.errors))
    new_tree.check()
    return new_tree, EditReport(version, sha, dict(sorted(changes.items())), added)


def apply_edits_file(
    tree_dir: str | Path,
    edits_path: str | Path,
    out: str | Path | None = None,
    *,
    embedder: EmbedderSource = None,
) -> EditReport:
    """``dgprm tree apply TREE EDITS.yaml [-o NEW_TREE]``: load, apply, save.

    Saves to ``out`` (the tree itself when ``None``), atomically. Without ``embedder``
    the tree's own (``manifest["embedder_spec"]``) is made when a text needs embedding.
    On any error nothing is written.
    """
    if out is not None:
        check_output_dir(out, "manifest.json", "reward tree", [edits_path])
    tree = RewardTree.load(tree_dir)
    if embedder is None:

        def embedder() -> Embedder:
            from dgprm.embed import make_embedder

            return make_embedder(str(tree.manifest.get("embedder_spec") or "minilm"))

    new_tree, report = apply_edits(tree, edits_path, embedder)
    new_tree.save(Path(out) if out is not None else Path(tree_dir))
    return report
