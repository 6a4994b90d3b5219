"""Human edits of a reward tree: export to YAML, apply, refuse bad files."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dgprm.files import file_sha256
from dgprm.tree.edits import (
    EditError,
    apply_edits,
    apply_edits_file,
    describe_edits,
    export_yaml,
    write_export,
)
from dgprm.tree.model import Criterion, Node, RewardTree, TreeError
from tests.conftest import KeywordEmbedder

TEXTS = {
    "c1": "arithmetic is computed correctly",
    "c2": "equations are set up correctly",
    "c3": "units are converted correctly",
}
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def embedder() -> KeywordEmbedder:
    return KeywordEmbedder(dim=64)


def small_tree(embedder: KeywordEmbedder) -> RewardTree:
    """Two parents, three children, one member criterion each (as in test_scoring)."""
    criteria = [
        Criterion(f"x{i}/0", f"x{i}", t.split()[0], t, True, reason="ok", child=c)
        for i, (c, t) in enumerate(TEXTS.items())
    ]
    vectors = embedder.encode(list(TEXTS.values()))
    nodes = [
        Node("p1", "parent", "Calculations are right", children=["c1", "c2"]),
        Node("p2", "parent", "Units are handled", children=["c3"]),
        Node("c1", "child", TEXTS["c1"], parent="p1", members=["x0/0"], sources=["x0"]),
        Node("c2", "child", TEXTS["c2"], parent="p1", members=["x1/0"], sources=["x1"]),
        Node("c3", "child", TEXTS["c3"], parent="p2", members=["x2/0"], sources=["x2"]),
    ]
    nodes[0].members, nodes[0].sources = ["x0/0", "x1/0"], ["x0", "x1"]
    nodes[1].members, nodes[1].sources = ["x2/0"], ["x2"]
    parent_rows = np.stack([vectors[:2].mean(0), vectors[2]])
    rows = np.concatenate([parent_rows, vectors, vectors]).astype(np.float32)
    tree = RewardTree(nodes, criteria, rows, {"embedder": embedder.model_id})
    tree.check()
    return tree


def edits_file(tmp_path: Path, text: str, name: str = "edits.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def apply(tree, tmp_path, text, embedder=None):
    return apply_edits(tree, edits_file(tmp_path, text), embedder, now=NOW)


def row(tree: RewardTree, node_id: str) -> np.ndarray:
    return tree.vectors[[n.id for n in tree.nodes].index(node_id)]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


# ---- export ----------------------------------------------------------------------------


def test_export_lists_every_node_and_applying_it_unchanged_changes_nothing(embedder, tmp_path):
    tree = small_tree(embedder)
    text = export_yaml(tree)
    data = yaml.safe_load(text)
    assert [p["id"] for p in data["parents"]] == ["p1", "p2"]
    assert [c["id"] for c in data["parents"][0]["children"]] == ["c1", "c2"]
    assert data["parents"][1]["children"][0] == {
        "id": "c3",
        "text": TEXTS["c3"],
        "weight": 1.0,
        "disabled": False,
    }
    new, report = apply(tree, tmp_path, text)  # no embedder needed: no text changed
    assert report.changes == {} and report.version == 1
    assert [n.id for n in new.nodes] == [n.id for n in tree.nodes]
    assert np.array_equal(new.vectors, tree.vectors)
    assert all(not n.edits for n in new.nodes)


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=80).filter(lambda t: t.strip()))
def test_exported_texts_read_back_exactly(text):
    embedder = KeywordEmbedder(dim=8)
    tree = small_tree(embedder)
    tree.nodes[2].text = text.strip()
    data = yaml.safe_load(export_yaml(tree))
    assert data["parents"][0]["children"][0]["text"] == text.strip()


def test_write_export_loads_the_tree_and_writes_the_file(embedder, tmp_path):
    small_tree(embedder).save(tmp_path / "tree")
    out = write_export(tmp_path / "tree", tmp_path / "tree.yaml")
    text = out.read_text()
    assert "exported_from" in text and file_sha256(tmp_path / "tree" / "tree.json") in text


# ---- each edit -------------------------------------------------------------------------


def test_text_change_re_embeds_the_node_and_its_parent(embedder, tmp_path):
    tree = small_tree(embedder)
    new, report = apply(
        tree,
        tmp_path,
        "parents:\n- id: p1\n  children:\n  - id: c2\n    text: '  fractions are reduced  '\n",
        embedder,
    )
    c2 = new.node("c2")
    assert c2.text == "fractions are reduced" and report.changes == {"text": 1}
    assert c2.edits == [{"version": 1, "op": "text", "was": TEXTS["c2"]}]
    assert np.allclose(row(new, "c2"), embedder.encode(["fractions are reduced"])[0])
    expected_parent = (unit(row(new, "c1")) + unit(row(new, "c2"))) / 2
    assert np.allclose(row(new, "p1"), expected_parent)
    assert np.array_equal(row(new, "c1"), row(tree, "c1"))  # untouched
    assert tree.node("c2").text == TEXTS["c2"]  # the input tree is not modified


def test_parent_text_change_keeps_its_embedding_when_children_change(embedder, tmp_path):
    tree = small_tree(embedder)
    first, _ = apply(tree, tmp_path, "parents:\n- id: p1\n  text: Algebra\n", embedder)
    assert np.allclose(row(first, "p1"), embedder.encode(["Algebra"])[0])
    second, _ = apply(
        first, tmp_path, "parents:\n- id: p1\n  children:\n  - id: c3\n", embedder
    )  # c3 moves in: p1's text was written by a person, so its row stays that text's
    assert np.allclose(row(second, "p1"), embedder.encode(["Algebra"])[0])


def test_disable_and_enable_again_and_the_scorer_view(embedder, tmp_path):
    tree = small_tree(embedder)
    off, report = apply(
        tree,
        tmp_path,
        "parents:\n- id: p2\n  disabled: true\n- id: p1\n  children:\n  - id: c1\n"
        "    disabled: true\n",
    )
    assert report.changes == {"disable": 2}
    assert off.node("p2").disabled and off.node("c1").disabled
    assert off.selectable_ids() == {"p1", "c2"}  # c3 goes with its disabled parent
    assert np.allclose(row(off, "p1"), unit(row(tree, "c2")))  # only active children count
    on, report = apply(off, tmp_path, "parents:\n- id: p2\n  disabled: false\n")
    assert report.version == 2 and report.changes == {"enable": 1}
    assert on.selectable_ids() == {"p1", "p2", "c2", "c3"}
    assert [e["op"] for e in on.node("p2").edits] == ["disable", "enable"]


def test_weight_is_set_and_read_back(embedder, tmp_path):
    tree = small_tree(embedder)
    new, report = apply(
        tree, tmp_path, "parents:\n- id: p1\n  children:\n  - id: c1\n    weight: 2.5\n"
    )
    assert new.node("c1").weight == 2.5 and report.changes == {"weight": 1}
    assert new.node("c1").edits[0] == {"version": 1, "op": "weight", "was": 1.0, "now": 2.5}
    assert yaml.safe_load(export_yaml(new))["parents"][0]["children"][0]["weight"] == 2.5


def test_moving_a_child_updates_both_parents(embedder, tmp_path):
    tree = small_tree(embedder)
    new, report = apply(tree, tmp_path, "parents:\n- id: p2\n  children:\n  - id: c2\n")
    assert report.changes == {"move": 1}
    assert new.node("p1").children == ["c1"] and new.node("p2").children == ["c3", "c2"]
    assert new.node("c2").parent == "p2"
    assert new.node("p2").members == ["x2/0", "x1/0"] and new.node("p2").sources == ["x2", "x1"]
    assert new.node("p1").members == ["x0/0"]
    assert np.allclose(row(new, "p1"), unit(row(tree, "c1")))
    assert np.allclose(row(new, "p2"), (unit(row(tree, "c3")) + unit(row(tree, "c2"))) / 2)
    assert new.node("c2").edits[0] == {"version": 1, "op": "move", "was": "p1", "now": "p2"}


def test_merge_moves_members_and_keeps_the_merged_id(embedder, tmp_path):
    tree = small_tree(embedder)
    text = "parents:\n- id: p1\n  children:\n  - id: c2\n    merge_into: c1\n"
    new, report = apply(tree, tmp_path, text)
    c1, c2 = new.node("c1"), new.node("c2")
    assert report.changes == {"merge": 1}
    assert c1.members == ["x0/0", "x1/0"] and c1.sources == ["x0", "x1"]
    assert c2.merged_into == "c1" and c2.disabled and c2.members == [] and not c2.active
    assert {c.id: c.child for c in new.criteria}["x1/0"] == "c1"
    assert np.allclose(row(new, "c1"), (row(tree, "c1") + row(tree, "c2")) / 2)
    assert [n.id for n in new.nodes] == [n.id for n in tree.nodes]  # nothing removed
    assert new.selectable_ids() == {"p1", "p2", "c1", "c3"}
    again = export_yaml(new)
    assert "merge_into" in again
    same, report = apply(new, tmp_path, again)  # re-applying the export is a no-op
    assert report.changes == {} and same.node("c1").members == c1.members


def test_adding_a_criterion_embeds_it_with_human_provenance(embedder, tmp_path, tmp_path_factory):
    tree = small_tree(embedder)
    text = (
        "parents:\n- id: p2\n  children:\n  - text: the final answer states its unit\n"
        "    weight: 2\n"
    )
    new, report = apply(tree, tmp_path, text, embedder)
    assert report.added == {"parents[0].children[0]": "c0004"} and report.changes == {"add": 1}
    node = new.node("c0004")
    assert node.origin == "human" and node.parent == "p2" and node.weight == 2.0
    assert new.node("p2").children == ["c3", "c0004"]
    criterion = next(c for c in new.criteria if c.id == node.members[0])
    assert criterion.origin == "human" and criterion.kept and criterion.pair_id == ""
    assert criterion.text == "the final answer states its unit"
    expected = embedder.encode(["the final answer states its unit"])[0]
    assert np.allclose(row(new, "c0004"), expected)
    assert np.allclose(new.vectors[-1], expected)  # the new kept criterion's row comes last
    assert new.vectors.shape == (len(new.nodes) + 4, 64)
    assert describe_edits(node) == "written by a person (v1)"
    saved = RewardTree.load(new.save(tmp_path_factory.mktemp("t") / "tree"))
    assert saved.node("c0004").origin == "human"


def test_the_manifest_records_every_applied_file_by_hash(embedder, tmp_path):
    tree = small_tree(embedder)
    tree.save(tmp_path / "tree")
    first = edits_file(tmp_path, "parents:\n- id: p1\n  weight: 3\n", "one.yaml")
    second = edits_file(tmp_path, "parents:\n- id: p2\n  disabled: true\n", "two.yaml")
    apply_edits_file(tmp_path / "tree", first, tmp_path / "v1")
    report = apply_edits_file(tmp_path / "v1", second)  # in place
    assert report.version == 2
    manifest = json.loads((tmp_path / "v1" / "manifest.json").read_text())
    assert [e["version"] for e in manifest["edits"]] == [1, 2]
    assert [e["sha256"] for e in manifest["edits"]] == [file_sha256(first), file_sha256(second)]
    assert manifest["edits"][1]["changes"] == {"disable": 1}
    loaded = RewardTree.load(tmp_path / "v1")
    assert loaded.node("p1").weight == 3.0 and loaded.node("p2").disabled
    assert describe_edits(loaded.node("p1")) == "edited: weight (v1)"
    assert not (tmp_path / "tree" / "manifest.json").read_text().count('"edits"')


def test_applying_the_same_file_to_the_same_tree_gives_the_same_tree(embedder, tmp_path):
    tree = small_tree(embedder)
    text = (
        "parents:\n- id: p2\n  children:\n  - id: c2\n    text: equations balance\n"
        "  - text: a new one\n- id: p1\n  children:\n  - id: c1\n    weight: 0.5\n"
    )
    a, _ = apply(tree, tmp_path, text, embedder)
    b, _ = apply(tree, tmp_path, text, embedder)
    assert [n.to_dict() for n in a.nodes] == [n.to_dict() for n in b.nodes]
    assert np.array_equal(a.vectors, b.vectors) and a.manifest == b.manifest


def test_a_changed_text_needs_the_trees_embedder(embedder, tmp_path):
    tree = small_tree(embedder)
    text = "parents:\n- id: p1\n  text: new words\n"
    with pytest.raises(EditError, match="embedder"):
        apply(tree, tmp_path, text)
    with pytest.raises(EditError, match="built with embedder 'keyword-test'"):
        apply(tree, tmp_path, text, KeywordEmbedder(model_id="other"))


# ---- refusals: file:line:field, nothing written ---------------------------------------

REFUSALS = [
    ("parents:\n- id: p9\n", 2, "parents[0].id", "unknown id 'p9'"),
    ("parents:\n- id: p1\n  children:\n  - id: c9\n", 4, "parents[0].children[0].id", "unknown"),
    (
        "parents:\n- id: p1\n  children:\n  - id: p2\n",
        4,
        "parents[0].children[0].id",
        "a parent cannot be placed under a parent",
    ),
    ("parents:\n- id: c1\n", 2, "parents[0].id", "is a child, listed here as a parent"),
    (
        "parents:\n- id: p1\n  children:\n  - id: c1\n    merge_into: c2\n"
        "  - id: c2\n    merge_into: c1\n",
        5,
        "parents[0].children[0].merge_into",
        "cannot chain or form a cycle",
    ),
    (
        "parents:\n- id: p1\n  children:\n  - id: c1\n    merge_into: c1\n",
        5,
        "parents[0].children[0].merge_into",
        "into itself",
    ),
    (
        "parents:\n- id: p1\n  children:\n  - id: c1\n    merge_into: p2\n",
        5,
        "parents[0].children[0].merge_into",
        "is a parent",
    ),
    (
        "parents:\n- id: p1\n  children:\n  - id: c1\n- id: p2\n  children:\n  - id: c1\n",
        7,
        "parents[1].children[0].id",
        "listed twice",
    ),
    ("parents:\n- id: p1\n  weight: -1\n", 3, "parents[0].weight", "finite number > 0"),
    ("parents:\n- id: p1\n  weight: .nan\n", 3, "parents[0].weight", "finite number > 0"),
    ("parents:\n- id: p1\n  weight: heavy\n", 3, "parents[0].weight", "expected a number"),
    ("parents:\n- id: p1\n  disabled: maybe\n", 3, "parents[0].disabled", "true or false"),
    ("parents:\n- id: p1\n  colour: red\n", 3, "parents[0].colour", "unknown key"),
    ("parents:\n- id: p1\n  text: ''\n", 3, "parents[0].text", "non-empty text"),
    ("parents:\n- text: a new parent\n", 2, "parents[0].id", "parents cannot be added"),
    (
        "parents:\n- id: p1\n  children:\n  - weight: 2\n",
        4,
        "parents[0].children[0].text",
        "needs a text",
    ),
    (
        "parents:\n- id: p2\n  children:\n  - text: Units are converted CORRECTLY\n",
        4,
        "parents[0].children[0].text",
        "c3 under p2 already has this text",
    ),
    ("parents:\n- id: p1\n  children: c1\n", 3, "parents[0].children", "expected a list"),
    ("parents: p1\n", 1, "parents", "expected a list"),
    ("format: 2\nparents: []\n", 1, "format", "unsupported format"),
    ("nodes: []\n", 1, "nodes", "unknown key"),
]


@pytest.mark.parametrize(("text", "line", "field", "message"), REFUSALS)
def test_bad_edits_are_refused_with_file_line_field_and_nothing_written(
    embedder, tmp_path, text, line, field, message
):
    small_tree(embedder).save(tmp_path / "tree")
    before = {p.name: p.read_bytes() for p in (tmp_path / "tree").iterdir()}
    path = edits_file(tmp_path, text)
    with pytest.raises(EditError) as caught:
        apply_edits_file(tmp_path / "tree", path, tmp_path / "new", embedder=embedder)
    assert str(caught.value).startswith(f"{path}:{line}: field '{field}': ")
    assert message in str(caught.value)
    assert not (tmp_path / "new").exists()
    assert {p.name: p.read_bytes() for p in (tmp_path / "tree").iterdir()} == before


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("parents:\n- id: p1\n  text: [unclosed\n", 4, "malformed YAML"),
        ("parents:\n- id: p1\n  id: p2\n", 3, "duplicate key 'id'"),
        ("parents: !!python/object/apply:os.system ['true']\n", 1, "malformed YAML"),
        ("- p1\n", 1, "expected a mapping"),
        ("", 1, "expected a mapping"),
    ],
)
def test_malformed_files_are_refused_with_the_line(embedder, tmp_path, text, line, message):
    path = edits_file(tmp_path, text)
    with pytest.raises(EditError) as caught:
        apply(small_tree(embedder), tmp_path, text)
    assert str(caught.value).startswith(f"{path}:{line}: ") and message in str(caught.value)


def test_invalid_utf8_is_refused_with_the_line(embedder, tmp_path):
    path = tmp_path / "edits.yaml"
    path.write_bytes(b"parents:\n- id: p1\n  text: \xff\n")
    with pytest.raises(EditError, match=r"edits.yaml:3: invalid UTF-8"):
        apply_edits(small_tree(embedder), path)


def test_a_merged_child_cannot_be_enabled_moved_or_merged_elsewhere(embedder, tmp_path):
    merged, _ = apply(
        small_tree(embedder),
        tmp_path,
        "parents:\n- id: p1\n  children:\n  - id: c2\n    merge_into: c1\n",
    )
    cases = [
        ("  - id: c2\n    disabled: false\n", "cannot be enabled again"),
        ("  - id: c2\n    merge_into: c3\n", "already merged into c1"),
        ("  - id: c1\n    merge_into: c2\n", "merge into that child instead"),
    ]
    for body, message in cases:
        with pytest.raises(EditError, match=message):
            apply(merged, tmp_path, "parents:\n- id: p1\n  children:\n" + body)
    with pytest.raises(EditError, match="it cannot be changed"):
        apply(merged, tmp_path, "parents:\n- id: p2\n  children:\n  - id: c2\n")


# ---- the model: old files load, new fields are checked ---------------------------------


def test_a_tree_json_written_before_the_edit_fields_still_loads(embedder, tmp_path):
    directory = small_tree(embedder).save(tmp_path / "tree")
    data = json.loads((directory / "tree.json").read_text())
    new_fields = ("disabled", "weight", "origin", "merged_into", "edits")
    for node in data["nodes"]:
        for key in new_fields:
            node.pop(key)
    for criterion in data["criteria"]:
        criterion.pop("origin")
    (directory / "tree.json").write_text(json.dumps(data))
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"]["tree.json"] = file_sha256(directory / "tree.json")
    (directory / "manifest.json").write_text(json.dumps(manifest))
    tree = RewardTree.load(directory)
    assert all(n.weight == 1.0 and not n.disabled and not n.edited for n in tree.nodes)
    assert tree.selectable_ids() == {"p1", "p2", "c1", "c2", "c3"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weight": 0}, "must be > 0"),
        ({"weight": float("nan")}, "finite number"),
        ({"weight": True}, "finite number"),
        ({"disabled": "yes"}, "true or false"),
        ({"origin": "robot"}, "unknown origin"),
        ({"merged_into": "p1"}, "not a child"),
        ({"merged_into": "c2"}, "must be disabled and have no members"),
    ],
)
def test_check_refuses_bad_edit_fields(embedder, change, message):
    tree = small_tree(embedder)
    for key, value in change.items():
        setattr(tree.node("c1"), key, value)
    with pytest.raises(TreeError, match=message):
        tree.check()


def test_the_documented_example_applies_as_described(tmp_path):
    from tests.report_demo import demo_tree

    readme = (Path(__file__).resolve().parents[1] / "docs" / "guide.md").read_text()
    example = readme.split("**Human edits.**")[1].split("```yaml\n")[1].split("```")[0]
    embedder = KeywordEmbedder(dim=64)
    tree = demo_tree(embedder)
    new, report = apply(tree, tmp_path, example, embedder)
    assert report.changes == {"text": 1, "weight": 1, "move": 1, "merge": 1, "add": 1, "disable": 1}
    assert new.node("c0007").parent == "p001" and new.node("c0002").merged_into == "c0001"
    assert new.node("c0003").weight == 2.0 and new.node("p002").disabled
    added = new.node(report.added["parents[0].children[3]"])
    assert added.origin == "human" and added.parent == "p001"
    assert not {"p002", "c0004", "c0005", "c0006", "c0002"} & new.selectable_ids()
