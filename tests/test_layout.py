"""The house rules that a refactor could break: no import cycles in src/, the CLI reference
in docs/ matches the code, the curated API, help on every config field."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import dgprm
from dgprm import config

SRC = Path(dgprm.__file__).parent
DOCS = SRC.parents[1] / "docs"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the dgprm modules it imports anywhere in its body (lazy imports included,
    ``TYPE_CHECKING`` blocks excluded). ``from pkg import name`` counts as an import of
    ``pkg.name`` when that is a module, else of ``pkg``."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.startswith("dgprm")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                if not base.startswith("dgprm"):
                    continue
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    edges.add(target if target in modules else base)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_in_src():
    graph = import_graph()
    assert "dgprm.scoring.scorer" in graph and graph["dgprm.cli"]  # the walk saw the package
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph) or [])


def test_docs_cli_reference_is_current():
    from dgprm.cli.docs import render

    current = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert current == render(), "docs/cli.md is stale: python -m dgprm.cli.docs > docs/cli.md"


def test_the_curated_api_is_importable_and_documented():
    for name in dgprm.__all__:
        assert getattr(dgprm, name) is not None, name
    for name in ("RewardTree", "build_tree", "abuild_tree", "StepScorer", "StepReward"):
        assert name in dgprm.__all__
    assert "StepScorer.from_tree" in dgprm.__doc__


@pytest.mark.parametrize("name", sorted(config.SECTIONS))
def test_every_config_field_has_help(name):
    for field_name, field in config.SECTIONS[name].model_fields.items():
        assert field.description, f"{name}.{field_name} has no help text"


def test_importing_dgprm_loads_no_model_runtime():
    code = (
        "import sys, dgprm, dgprm.cli;"
        "print([m for m in ('torch', 'transformers', 'xllamacpp', 'sklearn') if m in sys.modules])"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_modules_import_on_their_own():
    for name in sorted(import_graph()):
        if name != "dgprm.__main__":
            importlib.import_module(name)
