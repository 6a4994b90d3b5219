"""Build src/dgprm/samples/tree from the hand-written criteria in
src/dgprm/samples/written_criteria.json, embedded with the packaged MiniLM model.

Usage: python scripts/make_sample_tree.py
"""

from __future__ import annotations

import json
from pathlib import Path

from dgprm.embed import make_embedder
from dgprm.tree.build import written_tree

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "dgprm" / "samples"


def main() -> None:
    spec = json.loads((SAMPLES / "written_criteria.json").read_text(encoding="utf-8"))
    tree = written_tree(spec["parents"], make_embedder("minilm"), note=spec["about"])
    tree.save(SAMPLES / "tree")
    print(f"wrote {SAMPLES / 'tree'}: {len(tree.parents)} parents, {len(tree.children)} children")


if __name__ == "__main__":
    main()
