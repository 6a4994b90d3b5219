"""A realistic report input built without an LLM: a hand-written reward tree (with human
edits applied through dgprm.tree.edits), scores for the packaged PRMBench and
ProcessBench sample trajectories (gold labels from dgprm.data's converters), and a
PRMBench run directory whose results and chart come from dgprm.bench's own functions.

``python -m tests.report_demo OUT_DIR`` writes it all and renders OUT_DIR/report.html.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dgprm.bench.metrics import Prediction, prmbench_results
from dgprm.bench.prmbench import (
    leaderboard_path,
    load_leaderboard,
    metric_items,
    prmbench_records,
    resolve_source,
    save_chart,
    table_rows,
)
from dgprm.data import prmbench_trajectories, processbench_trajectories
from dgprm.files import write_json, write_jsonl
from dgprm.tree.edits import apply_edits
from dgprm.tree.model import Criterion, Node, RewardTree
from tests.conftest import SAMPLES, KeywordEmbedder

PARENTS = {
    "p001": (
        "Arithmetic: every calculation in the step is carried out correctly",
        {
            "c0001": "Additions, multiplications and divisions give the right result",
            "c0002": "Intermediate values are copied correctly from earlier steps",
            "c0003": "Fractions and percentages are converted and simplified correctly",
        },
    ),
    "p002": (
        "Problem understanding: the step uses the quantities and relations the question states",
        {
            "c0004": "Numbers and units are read from the question without misreading",
            "c0005": "Relations such as 'four times' or '7 shorter than' become the right equation",
            "c0006": "The step works towards the quantity the question asks for",
        },
    ),
    "p003": (
        "Logical validity: each step follows from the question and the previous steps",
        {
            "c0007": "No unjustified assumption is introduced, such as assuming the answer",
            "c0008": "Equations are transformed with valid algebra (same operation on both sides)",
            "c0009": "The step does not contradict an earlier step or a given condition",
        },
    ),
    "p004": (
        "Efficiency: the solution avoids redundant and circular steps",
        {
            "c0010": "The step makes progress instead of restating an earlier result",
            "c0011": "The conclusion is not used to justify itself (no circular reasoning)",
        },
    ),
    "p005": (
        "Final answer: it is explicit, in the requested units, and matches the work",
        {
            "c0012": "Units are tracked and converted consistently through the solution",
            "c0013": "The final answer is stated explicitly and equals the computed value",
        },
    ),
}
PAIRS = [
    "circular_prm_test_p1_0",
    "circular_prm_test_p1_2",
    "confidence_prm_test_p1_2",
    "counterfactual_prm_test_p1_1",
    "deception_prm_test_p1_3",
    "domain_inconsistency_prm_test_p1_0",
    "missing_condition_prm_test_p1_4",
    "redundency_prm_test_p1_2",
    "step_contradiction_prm_test_p1_1",
]
REASONS = [
    "Specific and checkable on a single step.",
    "Names a concrete error the rejected solution makes.",
    "Applies beyond this one problem.",
]
EDITS = """\
# a reviewer's edits to the demo tree
parents:
- id: p001
  children:
  - id: c0001
    weight: 2
- id: p003
  children:
  - id: c0009
    disabled: true   # rarely relevant on single steps
- id: p004
  children:
  - id: c0011
    merge_into: c0007
- id: p005
  text: "Final answer: explicit, in the requested units, consistent with the work"
  children:
  - text: The final answer is rounded the way the question asks
"""
TITLES = {
    "c0001": "Correct arithmetic",
    "c0002": "Faithful carry-over",
    "c0003": "Fractions handled",
    "c0004": "Quantities read right",
    "c0005": "Relations translated",
    "c0006": "On target",
    "c0007": "No unjustified assumption",
    "c0008": "Valid algebra",
    "c0009": "Consistency",
    "c0010": "Progress",
    "c0011": "No circularity",
    "c0012": "Units consistent",
    "c0013": "Explicit final answer",
}
# how strongly each criterion's score follows the gold label (0 = noise)
SIGNAL = {
    "c0001": 0.55,
    "c0002": 0.35,
    "c0003": 0.2,
    "c0004": 0.3,
    "c0005": 0.5,
    "c0006": 0.05,
    "c0007": 0.45,
    "c0008": 0.4,
    "c0010": -0.1,
    "c0012": 0.15,
    "c0013": 0.25,
    "c0014": 0.1,
}


@dataclass
class Demo:
    tree: Path
    scores: Path
    trajectories: Path
    bench: Path
    edits: Path


def demo_tree(embedder: KeywordEmbedder) -> RewardTree:
    """The tree as built (before edits): 5 parents, 13 children, member criteria with the
    validator's reasons, two rejected criteria and one build error."""
    rng = random.Random(7)
    nodes: list[Node] = []
    criteria: list[Criterion] = []
    for parent_id, (parent_text, children) in PARENTS.items():
        parent = Node(parent_id, "parent", parent_text, children=list(children))
        nodes.append(parent)
        for child_id, text in children.items():
            members, sources = [], []
            for k in range(rng.randint(1, 4)):
                pair = rng.choice(PAIRS)
                cid = f"{pair}/{child_id}-{k}"
                criteria.append(
                    Criterion(
                        cid, pair, TITLES[child_id], text, True, rng.choice(REASONS), child_id
                    )
                )
                members.append(cid)
                if pair not in sources:
                    sources.append(pair)
            nodes.append(Node(child_id, "child", text, parent_id, [], members, sources))
    for pair, title, description, reason in (
        (PAIRS[0], "Better", "The better solution is better", "Too vague: names nothing to check."),
        (PAIRS[4], "Uses 42", "The answer uses the number 42", "Specific to one problem."),
    ):
        criteria.append(Criterion(f"{pair}/x", pair, title, description, False, reason))
    by_id = {n.id: n for n in nodes}
    for parent in (n for n in nodes if n.level == "parent"):
        parent.members = [m for c in parent.children for m in by_id[c].members]
        parent.sources = []
        for c in parent.children:
            parent.sources += [s for s in by_id[c].sources if s not in parent.sources]
    kept = [c for c in criteria if c.kept]
    crit_rows = embedder.encode([c.text for c in kept])
    row_of = {c.id: crit_rows[i] for i, c in enumerate(kept)}
    node_rows = {}
    for n in nodes:
        if n.level == "child":
            node_rows[n.id] = np.mean([row_of[m] for m in n.members], axis=0)
    for n in nodes:
        if n.level == "parent":
            dirs = [node_rows[c] / np.linalg.norm(node_rows[c]) for c in n.children]
            node_rows[n.id] = np.mean(dirs, axis=0)
    vectors = np.concatenate([np.stack([node_rows[n.id] for n in nodes]), crit_rows])
    manifest = {
        "embedder": embedder.model_id,
        "embedder_spec": "keyword-test",
        "llm": "openai:http://localhost:8000/v1#Qwen2.5-7B-Instruct",
        "dgprm_version": "0.1.0",
        "hyperparameters": {"xi": 0.25, "parent_xi": 0.6, "max_criteria": 4, "seed": 0},
        "runs": [{"at": "2026-11-24T10:00:00+00:00", "pairs": len(PAIRS)}],
    }
    errors = [
        {
            "stage": "judge",
            "reason": "unparseable answer: Expecting ',' delimiter: line 1 column 87",
            "pair_id": "multi_solutions_prm_test_p1_5",
        }
    ]
    tree = RewardTree(nodes, criteria, vectors.astype(np.float32), manifest, errors)
    tree.check()
    return tree


def _seeded(*parts: object) -> random.Random:
    return random.Random(int(hashlib.sha256(repr(parts).encode()).hexdigest()[:12], 16))


def demo_scores(tree: RewardTree, trajectories: list[dict]) -> list[dict]:
    """Scores lines as ``dgprm score`` writes them, made up but tied to the gold labels."""
    selectable = tree.selectable_ids()
    children = {
        p.id: [c for c in p.children if c in selectable] for p in tree.parents if p.id in selectable
    }
    lines = []
    for t in trajectories:
        steps = []
        for i, gold in enumerate(t["gold_labels"]):
            rng = _seeded(t["id"], i)
            if (t["id"], i) in {("gsm8k-201", 2), ("circular_prm_test_p1_2", 4)}:
                reason = (
                    "analyze: unparseable answer: Expecting value: line 1 column 1 (char 0)"
                    if i == 2
                    else "score: scores do not match the criteria offered (unknown [], "
                    "missing ['c0005'])"
                )
                steps.append(
                    {
                        "index": i,
                        "criteria": [],
                        "vector": [],
                        "reward": None,
                        "label": None,
                        "error": reason,
                    }
                )
                continue
            parents = rng.sample(sorted(children), k=rng.choice([1, 2, 2, 3]))
            chosen = []
            for p in parents:
                kids = children[p]
                chosen += rng.sample(kids, k=min(len(kids), rng.choice([1, 1, 2]))) if kids else [p]
            criteria = []
            for cid in chosen:
                signal = SIGNAL.get(cid, 0.0)
                base = 0.62 + (signal if gold is not False else -signal) * 0.3
                score = min(10, max(0, round(10 * (base + rng.gauss(0, 0.2)))))
                criteria.append(
                    {"id": cid, "parent_id": tree.node(cid).parent, "score": score / 10}
                )
            vector = [c["score"] for c in criteria]
            reward = round(sum(vector) / len(vector), 6)
            steps.append(
                {
                    "index": i,
                    "criteria": criteria,
                    "vector": vector,
                    "reward": reward,
                    "label": reward > 0.5,
                }
            )
        lines.append(
            {
                "id": t["id"],
                "steps": steps,
                "usage": {
                    "llm_calls": 3 * len(steps),
                    "cache_hits": 0,
                    "prompt_tokens": 1700 * len(steps),
                    "completion_tokens": 90 * len(steps),
                    "errors": sum("error" in s for s in steps),
                },
                "errors": [
                    {"step": s["index"], "reason": s["error"]} for s in steps if "error" in s
                ],
            }
        )
    return lines


def demo_bench(run: Path) -> Path:
    """A PRMBench run directory over the packaged sample, with made-up predictions
    (a step is judged wrong with some probability when it is wrong), scored by dgprm's
    own metric and drawn by its own chart code."""
    source = resolve_source(None)
    records = prmbench_records(source)
    items = metric_items(records)
    predictions = []
    for item_id, record in records:
        rng = _seeded("bench", item_id)
        wrong = {int(e) for e in record["error_steps"]}
        labels = [
            not (k + 1 in wrong and rng.random() < 0.45) and rng.random() > 0.2
            for k in range(len(record["modified_process"]))
        ]
        predictions.append(Prediction(item_id, True, labels))
    results = prmbench_results(items, predictions)
    results["label"] = "dgprm (demo)"
    run.mkdir(parents=True, exist_ok=True)
    write_json(run / "results.json", results)
    write_json(
        run / "run.json",
        {
            "config": {
                "method": "dgprm",
                "llm": "openai:http://localhost:8000/v1#Qwen2.5-7B-Instruct",
                "trees": ["runs/tree_f0"],
                "fold": 1,
            },
            "invocations": [],
            "usage": {"llm_calls": 412, "prompt_tokens": 690000, "completion_tokens": 41000},
        },
    )
    write_jsonl(
        run / "predictions.jsonl",
        (
            {"idx": p.id, "scores": {"step_level_validity_labels": p.labels}, "validity": True}
            for p in predictions
        ),
    )
    rows = table_rows(results, "dgprm (demo)", load_leaderboard(leaderboard_path(source)))
    save_chart(run / "chart.png", rows, "dgprm (demo)")
    return run


def build_demo(out: Path) -> Demo:
    embedder = KeywordEmbedder(dim=64)
    out.mkdir(parents=True, exist_ok=True)
    built = demo_tree(embedder)
    edits = out / "edits.yaml"
    edits.write_text(EDITS, encoding="utf-8")
    tree, _ = apply_edits(built, edits, embedder)
    tree.save(out / "tree")
    trajectories = prmbench_trajectories(SAMPLES / "prmbench_records.jsonl", limit=4)
    trajectories += processbench_trajectories(SAMPLES / "processbench_gsm8k.json")
    write_jsonl(out / "trajectories.jsonl", trajectories)
    write_jsonl(out / "scores.jsonl", demo_scores(tree, trajectories))
    return Demo(
        out / "tree",
        out / "scores.jsonl",
        out / "trajectories.jsonl",
        demo_bench(out / "bench"),
        edits,
    )


if __name__ == "__main__":
    from dgprm.report import write_report

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/report_demo")
    demo = build_demo(target)
    summary = write_report(
        demo.tree,
        target / "report.html",
        scores=[demo.scores],
        trajectories=[demo.trajectories],
        bench=[demo.bench],
    )
    print(json.dumps({k: str(v) for k, v in summary.__dict__.items()}, indent=1))
