"""dgprm report: statistics, reading scores, escaping, a page that loads nothing."""

from __future__ import annotations

import base64
import itertools
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dgprm.errors import InputError
from dgprm.report import auroc, criterion_stats, merge_stats, write_report
from dgprm.report.inputs import read_bench_run, read_trajectory_texts, summarise_scores
from dgprm.report.stats import StepScores, average_ranks
from dgprm.tree.model import Criterion, Node, RewardTree
from tests.report_demo import Demo, build_demo

# ---- AUROC and the statistics, on constructed data --------------------------------------


def brute_auroc(pos, neg):
    pairs = list(itertools.product(pos, neg))
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_auroc_on_hand_computed_cases():
    assert auroc([0.9, 0.8, 0.7], [0.1, 0.2]) == 1.0  # perfect separation
    assert auroc([0.1, 0.2], [0.9, 0.8, 0.7]) == 0.0  # perfectly inverted
    assert auroc([0.5, 0.5], [0.5, 0.5, 0.5]) == 0.5  # all tied
    assert auroc([0.9, 0.5], [0.5, 0.1]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert auroc([1.0, 0.6, 0.6, 0.2], [0.6, 0.4]) == pytest.approx(5 / 8)
    assert auroc([], [0.3]) is None and auroc([0.3], []) is None


def test_average_ranks_share_ties():
    assert average_ranks([3, 1, 3, 3, 2]) == [4.0, 1.0, 4.0, 4.0, 2.0]
    assert average_ranks([]) == []


scores = st.lists(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]), min_size=1, max_size=25)


@settings(max_examples=200, deadline=None)
@given(scores, scores)
def test_auroc_equals_the_pairwise_definition_with_ties(pos, neg):
    value = auroc(pos, neg)
    assert value == pytest.approx(brute_auroc(pos, neg))
    assert value + auroc(neg, pos) == pytest.approx(1.0)  # swapping the classes mirrors it


def test_criterion_stats_count_selections_and_split_by_gold():
    steps = [
        StepScores({"a": 0.9, "b": 0.5}, gold=True),
        StepScores({"a": 0.8}, gold=True),
        StepScores({"a": 0.2, "b": 0.5}, gold=False),
        StepScores({"b": 0.4}),  # no gold label: selected, not split
        StepScores({}, error="score: unparseable"),
    ]
    stats = criterion_stats(steps)
    a, b = stats["a"], stats["b"]
    assert (a.selected, b.selected) == (3, 3)
    assert a.mean == pytest.approx(1.9 / 3) and b.mean == pytest.approx(1.4 / 3)
    assert a.mean_correct == pytest.approx(0.85) and a.mean_wrong == pytest.approx(0.2)
    assert a.gap == pytest.approx(0.65) and a.auroc == 1.0
    assert b.correct == [0.5] and b.wrong == [0.5] and b.auroc == 0.5 and b.gap == 0.0
    pooled = merge_stats([stats, criterion_stats([StepScores({"a": 0.95}, gold=False)])])
    assert pooled["a"].selected == 4 and pooled["a"].auroc == 0.5  # (0.9, 0.8) vs (0.2, 0.95)


# ---- a small tree and score files --------------------------------------------------------

HOSTILE = '<script>alert("x")</script> & "quotes" </style> <img src=x onerror=alert(1)>'


def tiny_tree(tmp_path: Path, child_text: str = "Arithmetic is right") -> Path:
    nodes = [
        Node("p001", "parent", "Sound steps", children=["c0001", "c0002"]),
        Node("c0001", "child", child_text, "p001", [], ["a/0"], ["pa"]),
        Node("c0002", "child", "Units are stated", "p001", [], ["b/0"], ["pb"]),
    ]
    nodes[0].members, nodes[0].sources = ["a/0", "b/0"], ["pa", "pb"]
    criteria = [
        Criterion("a/0", "pa", "Arithmetic", child_text, True, "specific", "c0001"),
        Criterion("b/0", "pb", "Units", "are stated", True, "checkable", "c0002"),
    ]
    tree = RewardTree(nodes, criteria, np.eye(5, 4, dtype=np.float32), {"embedder": "t"})
    return tree.save(tmp_path / "tree")


def step(index, scores, gold=None, error=None, **extra):
    row = {
        "index": index,
        "criteria": [{"id": c, "parent_id": "p001", "score": s} for c, s in scores.items()],
        "vector": list(scores.values()),
        "reward": sum(scores.values()) / len(scores) if scores else None,
        "label": (sum(scores.values()) / len(scores) > 0.5) if scores else None,
        **extra,
    }
    if gold is not None:
        row["gold"] = gold
    if error is not None:
        row["error"] = error
    return row


def scores_file(tmp_path: Path, lines: list[dict], name: str = "scores.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def line(trajectory_id, steps, **extra):
    errors = [{"step": s["index"], "reason": s["error"]} for s in steps if "error" in s]
    return {
        "id": trajectory_id,
        "steps": steps,
        "usage": {"llm_calls": 3},
        "errors": errors,
        **extra,
    }


def test_gold_labels_come_from_the_step_then_the_line_then_the_trajectories_file(tmp_path):
    trajectories = tmp_path / "t.jsonl"
    trajectories.write_text(
        json.dumps(
            {
                "id": "t1",
                "question": "q",
                "steps": ["a", "b", "c"],
                "gold_labels": [False, False, True],
            }
        )
        + "\n"
    )
    path = scores_file(
        tmp_path,
        [
            line(
                "t1",
                [
                    step(0, {"c0001": 0.9}, gold=True),
                    step(1, {"c0001": 0.2}),
                    step(2, {"c0001": 0.7}),
                ],
                gold_labels=[False, None, None],
            )
        ],
    )
    summary = summarise_scores(
        path, {"p001", "c0001", "c0002"}, texts=read_trajectory_texts([trajectories])
    )
    steps = summary.shown[0].steps
    assert [s.gold for s in steps] == [True, False, True]
    assert [s.text for s in steps] == ["a", "b", "c"]
    assert summary.stats["c0001"].auroc == 1.0 and summary.gold_steps == 3


def test_a_scores_file_from_another_tree_is_refused_naming_file_line_and_field(tmp_path):
    tree = tiny_tree(tmp_path)
    path = scores_file(
        tmp_path,
        [
            line("t1", [step(0, {"c0001": 0.9})]),
            line("t2", [step(0, {"c0001": 0.5}), step(1, {"c0042": 0.5})]),
        ],
    )
    out = tmp_path / "report.html"
    with pytest.raises(InputError) as caught:
        write_report(tree, out, scores=[path])
    message = str(caught.value)
    assert message.startswith(f"{path}:2: field 'steps[1].criteria[0].id': criterion 'c0042'")
    assert "built with another tree" in message and str(tree) in message
    assert not out.exists()


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"id": "t", "steps": [step(0, {"c0001": 1.5})]}, "steps[0].criteria[0].score"),
        ({"id": "t", "steps": "nope"}, "steps"),
        (
            {"id": "t", "steps": [step(0, {"c0001": 0.5})], "gold_labels": [True, False]},
            "gold_labels",
        ),
        ({"id": "t", "steps": [step(0, {"c0001": 0.5}, gold="yes")]}, "steps[0].gold"),
        ({"id": "t", "steps": [step(-1, {"c0001": 0.5})]}, "steps[0].index"),
        ({"id": "", "steps": []}, "id"),
    ],
)
def test_malformed_score_lines_are_refused(tmp_path, bad, field):
    path = scores_file(tmp_path, [line("ok", [step(0, {"c0001": 0.5})]), bad])
    with pytest.raises(InputError, match=re.escape(f"{path}:2: field '{field}'")):
        summarise_scores(path, {"p001", "c0001"})


def test_duplicate_trajectory_ids_and_missing_steps_are_refused(tmp_path):
    path = scores_file(tmp_path, [line("t", [step(0, {"c0001": 0.5})])] * 2)
    with pytest.raises(InputError, match=r":2: field 'id': duplicate id 't'"):
        summarise_scores(path, {"c0001"})
    trajectories = tmp_path / "t.jsonl"
    trajectories.write_text(json.dumps({"id": "t", "question": "q", "steps": ["only"]}) + "\n")
    path = scores_file(tmp_path, [line("t", [step(0, {"c0001": 0.5}), step(1, {"c0001": 0.5})])])
    with pytest.raises(InputError, match=r":1: field 'steps\[1\].index': step 1 does not exist"):
        summarise_scores(path, {"c0001"}, texts=read_trajectory_texts([trajectories]))


def test_the_plain_critic_ablation_is_accepted(tmp_path):
    tree = tiny_tree(tmp_path)
    path = scores_file(tmp_path, [line("t", [step(0, {"critic": 0.7})])])
    write_report(tree, tmp_path / "r.html", scores=[path])
    assert "Plain critic" in (tmp_path / "r.html").read_text()


class Recorder:
    def __init__(self):
        self.started, self.advanced = {}, {}

    def start(self, stage, total):
        self.started[stage] = total

    def advance(self, stage, amount=1):
        self.advanced[stage] = self.advanced.get(stage, 0) + amount


def test_progress_follows_the_lines_of_each_scores_file(tmp_path):
    tree = tiny_tree(tmp_path)
    path = scores_file(tmp_path, [line(f"t{i}", [step(0, {"c0001": 0.5})]) for i in range(7)])
    recorder = Recorder()
    write_report(tree, tmp_path / "r.html", scores=[path], progress=recorder)
    assert recorder.started["read scores.jsonl"] == 7 == recorder.advanced["read scores.jsonl"]
    assert recorder.started["render"] == recorder.advanced["render"]


# ---- the page ----------------------------------------------------------------------------


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parse(page: str) -> list[tuple[str, dict]]:
    parser = Tags()
    parser.feed(page)
    return parser.tags


def test_every_text_is_escaped(tmp_path):
    tree = tiny_tree(tmp_path, child_text=HOSTILE)
    trajectories = tmp_path / "t.jsonl"
    trajectories.write_text(
        json.dumps({"id": "t<1>", "question": HOSTILE, "steps": [HOSTILE]}) + "\n"
    )
    path = scores_file(
        tmp_path,
        [line("t<1>", [step(0, {}, error=HOSTILE)]), line("t2", [step(0, {"c0001": 0.4})])],
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"note": HOSTILE, "value": 1}))
    write_report(tree, tmp_path / "r.html", scores=[path], trajectories=[trajectories], bench=[run])
    page = (tmp_path / "r.html").read_text()
    assert HOSTILE not in page and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    tags = parse(page)
    assert [t for t, _ in tags].count("script") == 1  # only the report's own
    assert [t for t, _ in tags].count("style") == 1
    assert not [a for t, a in tags if t == "img"]  # no chart in this run, and no injected img
    assert all(not k.startswith("on") for _, attrs in tags for k in attrs)


def urls_loaded(page: str) -> list[str]:
    """Everything the page could fetch: src/href/action attributes that leave the page,
    CSS url() and @import, <link> and <base> elements."""
    found = []
    for tag, attrs in parse(page):
        if tag in ("link", "base", "iframe", "object", "embed"):
            found.append(f"<{tag}>")
        for key in ("src", "href", "action", "data", "poster", "srcset"):
            value = attrs.get(key)
            if value and not value.startswith(("#", "data:image/png;base64,")):
                found.append(f"{tag} {key}={value}")
    found += re.findall(r"url\(\s*['\"]?(?!data:)[^)]*\)|@import", page)
    return found


def test_the_page_loads_nothing_and_names_no_url(demo: Demo, tmp_path):
    out = tmp_path / "r.html"
    write_report(
        demo.tree, out, scores=[demo.scores], trajectories=[demo.trajectories], bench=[demo.bench]
    )
    page = out.read_text()
    assert urls_loaded(page) == []
    csp = next(
        a["content"] for t, a in parse(page) if a.get("http-equiv") == "Content-Security-Policy"
    )
    assert csp.startswith("default-src 'none'; img-src data:;")
    # the only http(s) text is the judge LLM's server, shown as text, never as a link
    assert re.findall(r"https?://[^\s\"<#]+", page) == ["http://localhost:8000/v1"] * 2
    plain = tiny_tree(tmp_path / "plain")
    write_report(plain, tmp_path / "plain.html")
    assert not re.search(r"https?:", (tmp_path / "plain.html").read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    return build_demo(tmp_path_factory.mktemp("demo"))


def test_the_demo_report_shows_tree_stats_heatmaps_errors_and_bench(demo: Demo, tmp_path):
    out = tmp_path / "report.html"
    summary = write_report(
        demo.tree, out, scores=[demo.scores], trajectories=[demo.trajectories], bench=[demo.bench]
    )
    page = out.read_text()
    tags = parse(page)
    assert summary.trajectories == 8 and summary.error_records == 2 and summary.gold_steps == 40
    assert sum(t == "li" and "parent" in a.get("class", "") for t, a in tags) == 5
    assert sum(t == "li" and "child" in a.get("class", "").split() for t, a in tags) == 14
    assert sum(t == "table" and a.get("class") == "heatmap" for t, a in tags) == 8
    assert page.count('class="err-cell"') == 2  # each error record in its heatmap row too
    assert "analyze: unparseable answer" in page and "missing [&#x27;c0005&#x27;]" in page
    # edits are marked: the person-written child, the merged and disabled ones, the weight
    assert "person-written" in page and "merged into c0007" in page and "weight 2" in page
    assert "disabled" in page and "edited" in page
    # the AUROC chart, and the bench chart embedded byte for byte
    assert '<svg class="auroc-chart"' in page
    chart = next(a["src"] for t, a in tags if t == "img")
    png = base64.b64decode(chart.removeprefix("data:image/png;base64,"))
    assert png == (demo.bench / "chart.png").read_bytes()
    results = json.loads((demo.bench / "results.json").read_text())
    assert f"{results['overall']:.1f}" in page


def test_at_most_max_trajectories_heatmaps_but_every_error_record(demo: Demo, tmp_path):
    out = tmp_path / "report.html"
    summary = write_report(demo.tree, out, scores=[demo.scores], max_trajectories=1)
    page = out.read_text()
    assert summary.shown_trajectories == 1 and page.count('class="heatmap"') == 1
    assert "Showing 1 of 8 trajectories" in page
    assert page.count("analyze: unparseable answer") == 1  # in the error table, not hidden
    assert page.count("score: scores do not match") == 1


def test_bench_runs_are_read_and_refused_when_unfinished(tmp_path):
    run = tmp_path / "proc"
    run.mkdir()
    (run / "results.json").write_text(
        json.dumps(
            {
                "gsm8k": {
                    "acc_err": 50.0,
                    "acc_cor": 100.0,
                    "f1": 66.7,
                    "items": 4,
                    "unparseable": 0,
                },
                "average_f1": 66.7,
            }
        )
    )
    loaded = read_bench_run(run)
    assert loaded.kind == "processbench" and loaded.chart_png is None
    tree = tiny_tree(tmp_path)
    write_report(tree, tmp_path / "r.html", bench=[run])
    page = (tmp_path / "r.html").read_text()
    assert "ProcessBench" in page and "66.7" in page and "This run has no chart.png" in page
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no results.json"):
        write_report(tree, tmp_path / "r2.html", bench=[empty])
    (run / "chart.png").write_text("not a png")
    with pytest.raises(InputError, match="not a PNG"):
        read_bench_run(run)
    assert not (tmp_path / "r2.html").exists()


def test_a_tree_without_scores_still_renders_its_provenance(tmp_path):
    tree = tiny_tree(tmp_path)
    write_report(tree, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert 'id="tree-search"' in page and "Member criteria (1)" in page
    assert "specific" in page and "pa" in page  # the validator's reason, the source pair
    assert 'id="criteria"' not in page
