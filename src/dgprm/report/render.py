"""The report as one self-contained HTML page: inline CSS, JS and SVG, the bench chart as
a base64 PNG, and a Content-Security-Policy that lets the page load nothing at all.

Structure (ids are the in-page anchors)::

    header            tree summary cards, models, hyper-parameters, edit version
    nav               links to the sections below
    #tree             search box, expand/collapse, parents (collapsible) with children;
                      each child opens its provenance: member criteria with the
                      validator's verdict and reason, source pairs, edits
    #criteria         per scores file: totals, AUROC chart (inline SVG, when the steps
                      carry gold labels), a sortable table of every criterion scored
    #trajectories     per scores file: every error record, then a step × criterion
                      heatmap per trajectory (step text on hover)
    #bench            per bench run: configuration, results table, chart.png
    #build            the tree's build errors, rejected criteria, applied edit files
    footer            inputs with their SHA-256, dgprm version, time
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from dgprm.progress import NoProgress, Progress, counted
from dgprm.report.inputs import BenchRun, ScoredTrajectory, ScoresSummary
from dgprm.report.markup import Markup, el, join
from dgprm.report.stats import CriterionStats
from dgprm.scoring.index import CRITIC_ID
from dgprm.tree.edits import describe_edits
from dgprm.tree.model import Criterion, Node, RewardTree
from dgprm.version import __version__

#: Marks a page as written by ``dgprm report`` (only such a file is ever replaced).
GENERATOR = "dgprm report"

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)
KNOWN_CRITERION_FIELDS = {"id", "pair_id", "title", "description", "kept", "reason", "child"}
KNOWN_CRITERION_FIELDS |= {"origin"}
LOW, MID, HIGH = (194, 87, 12), (244, 244, 244), (31, 111, 180)


def _asset(name: str) -> str:
    return resources.files("dgprm.report").joinpath("assets", name).read_text(encoding="utf-8")


# ---- small formatting helpers ---------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for a table cell, ``–`` for none.

    Example:
        >>> fmt(0.12345), fmt(None), fmt(3.0, 0)
        ('0.12', '–', '3')
    """
    return "–" if value is None else f"{value:.{digits}f}"


def score_colour(score: float) -> tuple[str, str]:
    """Background and text colour of a heatmap cell: orange (0) – grey (0.5) – blue (1).

    Example:
        >>> score_colour(0.0), score_colour(0.5), score_colour(1.0)
        (('#c2570c', '#fff'), ('#f4f4f4', '#1f2328'), ('#1f6fb4', '#fff'))
    """
    score = min(max(score, 0.0), 1.0)
    a, b, t = (LOW, MID, score * 2) if score <= 0.5 else (MID, HIGH, score * 2 - 1)
    rgb = tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    ink = "#fff" if abs(score - 0.5) > 0.3 else "#1f2328"
    return "#{:02x}{:02x}{:02x}".format(*rgb), ink


FEW_LABELS = 5  # fewer correct or wrong steps than this: the AUROC is marked unreliable


def auroc_badge(stats: CriterionStats, prefix: str = "") -> Markup:
    """The AUROC badge of a criterion, faded when it rests on few labelled steps."""
    few = min(len(stats.correct), len(stats.wrong)) < FEW_LABELS
    return badge(
        f"{prefix}{fmt(stats.auroc)}",
        f"auc {auroc_class(stats.auroc)}" + (" few" if few else ""),
        f"AUROC from {len(stats.correct)} correct and {len(stats.wrong)} wrong steps "
        f"(mean score {fmt(stats.mean_correct)} vs {fmt(stats.mean_wrong)})"
        + (f"; under {FEW_LABELS} on one side: unreliable" if few else ""),
    )


def auroc_class(value: float | None) -> str:
    """CSS class of an AUROC badge: strong / some / none / inverse signal.

    Example:
        >>> [auroc_class(v) for v in (0.8, 0.6, 0.5, 0.3, None)]
        ['good', 'fair', 'flat', 'inverse', 'na']
    """
    if value is None:
        return "na"
    if value >= 0.7:
        return "good"
    if value >= 0.55:
        return "fair"
    if value > 0.45:
        return "flat"
    return "inverse"


def badge(text: str, kind: str = "", title: str | None = None) -> Markup:
    return el("span", {"class": f"badge {kind}".strip(), "title": title}, text)


def _short(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ---- header ---------------------------------------------------------------------------


def _card(label: str, value: str, note: str = "", kind: str = "") -> Markup:
    return el(
        "div",
        {"class": f"card {kind}".strip()},
        el("div", {"class": "card-value"}, value),
        el("div", {"class": "card-label"}, label),
        el("div", {"class": "card-note"}, note) if note else None,
    )


def _header(tree: RewardTree, tree_name: str, scores: Sequence[ScoresSummary]) -> Markup:
    m = tree.manifest
    children = tree.children
    disabled = sum(not n.active for n in tree.nodes)
    merged = sum(n.merged_into is not None for n in children)
    pairs = {c.pair_id for c in tree.criteria if c.origin != "human"}
    edits = m.get("edits", [])
    cards = [
        _card("parents", str(len(tree.parents))),
        _card(
            "children",
            str(len(children)),
            ", ".join(
                x
                for x in (
                    f"{disabled - merged} disabled" if disabled - merged else "",
                    f"{merged} merged" if merged else "",
                )
                if x
            ),
        ),
        _card(
            "criteria kept",
            f"{len(tree.kept_criteria)}/{len(tree.criteria)}",
            "by the validator",
        ),
        _card("source pairs", str(len(pairs))),
        _card(
            "build errors",
            str(len(tree.errors)),
            "LLM failures while building",
            "bad" if tree.errors else "",
        ),
        _card(
            "edit version",
            f"v{len(edits)}" if edits else "v0",
            f"{sum(n.edited for n in tree.nodes)} nodes edited" if edits else "as built",
        ),
    ]
    if scores:
        cards += [
            _card("scored trajectories", str(sum(s.trajectories for s in scores))),
            _card(
                "scored steps",
                str(sum(s.steps for s in scores)),
                f"{sum(s.error_steps for s in scores)} with errors",
            ),
        ]
    hyper = m.get("hyperparameters", {})
    runs = m.get("runs", [])
    meta = [
        ("judge LLM", m.get("llm")),
        ("embedder", m.get("embedder")),
        ("ξ", hyper.get("xi")),
        ("parent ξ", hyper.get("parent_xi")),
        ("built", runs[0].get("at") if runs else None),
        ("runs", len(runs) if runs else None),
        ("dgprm", m.get("dgprm_version")),
    ]
    return el(
        "header",
        {"class": "top"},
        el(
            "div",
            {"class": "wrap"},
            el("div", {"class": "eyebrow"}, "DG-PRM reward tree report"),
            el("h1", None, el("code", None, tree_name)),
            el(
                "div",
                {"class": "meta"},
                [
                    el("span", None, el("b", None, k), " ", str(v))
                    for k, v in meta
                    if v not in (None, "")
                ],
            ),
            el("div", {"class": "cards"}, cards),
        ),
    )


def _nav(scores: Sequence[ScoresSummary], bench: Sequence[BenchRun]) -> Markup:
    links = [("#tree", "Tree")]
    if scores:
        links += [("#criteria", "Criteria"), ("#trajectories", "Trajectories")]
    if bench:
        links.append(("#bench", "Benchmarks"))
    links.append(("#build", "Build & edits"))
    return el(
        "nav",
        {"class": "sections"},
        el("div", {"class": "wrap"}, [el("a", {"href": href}, text) for href, text in links]),
    )


# ---- tree -----------------------------------------------------------------------------


def _stat_badges(stats: CriterionStats | None, steps: int) -> list[Markup]:
    if stats is None:
        return [badge("never selected", "muted")] if steps else []
    out = [
        badge(
            f"selected {stats.selected}×",
            "sel",
            f"scored on {stats.selected} of {steps} steps",
        ),
        badge(f"mean {fmt(stats.mean)}", "mean", "mean score over the steps it was scored on"),
    ]
    if stats.auroc is not None:
        out.append(auroc_badge(stats, "AUROC "))
    return out


def _parent_stat_badges(
    parent: Node, index: dict[str, Node], stats: dict[str, CriterionStats], steps: int
) -> list[Markup]:
    """A parent is scored itself only when none of its children matches; show that, and
    how often its children were scored."""
    if not steps:
        return []
    through = sum(stats[c].selected for c in parent.children if c in stats)
    out = [
        badge(
            f"children scored {through}×",
            "sel" if through else "muted",
            "steps × children of this parent that were scored",
        )
    ]
    own = stats.get(parent.id)
    if own is not None:
        out.append(
            badge(
                f"scored itself {own.selected}×",
                "sel",
                "steps on which no child matched, so the parent itself was scored",
            )
        )
        out += _stat_badges(own, steps)[1:]
    return out


def _state_badges(node: Node) -> list[Markup]:
    out = []
    if node.merged_into is not None:
        out.append(badge(f"merged into {node.merged_into}", "off"))
    elif node.disabled:
        out.append(badge("disabled", "off", "never selected or scored"))
    if node.weight != 1.0:
        out.append(badge(f"weight {node.weight:g}", "weight"))
    note = describe_edits(node)
    if node.origin == "human":
        out.append(badge("person-written", "human", note))
    elif note:
        out.append(badge("edited", "edited", note))
    return out


def _edit_history(node: Node) -> Markup | None:
    if not node.edits:
        return None
    items = []
    for e in node.edits:
        details = {k: v for k, v in e.items() if k not in ("version", "op")}
        text = ", ".join(f"{k}: {v}" for k, v in details.items())
        items.append(
            el(
                "li",
                None,
                el("span", {"class": "badge edited"}, f"v{e.get('version')}"),
                " ",
                el("b", None, str(e.get("op"))),
                f" — {text}" if text else "",
            )
        )
    return el("div", {"class": "prov-block"}, el("h4", None, "Edits"), el("ul", None, items))


def _extra_fields(criterion: Criterion) -> str:
    extra = [
        f"{f.name}: {getattr(criterion, f.name)}"
        for f in dataclasses.fields(criterion)
        if f.name not in KNOWN_CRITERION_FIELDS and getattr(criterion, f.name) not in (None, "")
    ]
    return "; ".join(extra)


def _members_table(members: list[Criterion]) -> Markup:
    rows = []
    for c in members:
        verdict = badge("kept", "ok") if c.kept else badge("rejected", "off")
        reason = c.reason or ("written by a person" if c.origin == "human" else "")
        extra = _extra_fields(c)
        rows.append(
            el(
                "tr",
                None,
                el("td", {"class": "mono"}, c.id),
                el(
                    "td",
                    None,
                    el("b", None, c.title) if c.title else None,
                    ": " if c.title else None,
                    c.description,
                ),
                el("td", {"class": "mono"}, c.pair_id or "person"),
                el(
                    "td",
                    None,
                    verdict,
                    " ",
                    reason,
                    el("div", {"class": "muted"}, extra) if extra else None,
                ),
            )
        )
    heads = ["criterion", "title: description (as the judge wrote it)", "source pair"]
    return _grid([*heads, "validator: verdict and reason"], rows, "members")


def _search_text(*parts: object) -> str:
    return " ".join(str(p) for p in parts if p).casefold()


def _child_item(
    child: Node,
    criteria: dict[str, Criterion],
    stats: dict[str, CriterionStats],
    steps: int,
) -> Markup:
    members = [criteria[m] for m in child.members if m in criteria]
    search = _search_text(
        child.id,
        child.text,
        *(c.text for c in members),
        *(c.id for c in members),
        *child.sources,
    )
    provenance = el(
        "div",
        {"class": "prov"},
        el(
            "div",
            {"class": "prov-block"},
            el("h4", None, f"Member criteria ({len(members)})"),
            _members_table(members)
            if members
            else el(
                "p", {"class": "muted"}, "None: its members moved to the child it was merged into."
            ),
        ),
        el(
            "div",
            {"class": "prov-block"},
            el("h4", None, f"Source pairs ({len(child.sources)})"),
            el("div", {"class": "chips"}, [el("code", None, s) for s in child.sources])
            if child.sources
            else el("p", {"class": "muted"}, "none"),
        ),
        _edit_history(child),
    )
    return el(
        "li",
        {
            "class": "child" + ("" if child.active else " inactive"),
            "id": f"node-{child.id}",
            "data-search": search,
        },
        el(
            "details",
            {"class": "cnode"},
            el(
                "summary",
                None,
                el("span", {"class": "nid child-id"}, child.id),
                el("span", {"class": "t"}, child.text),
                el(
                    "span",
                    {"class": "badges"},
                    _state_badges(child),
                    badge(counted(len(child.members), "criterion", "criteria"), "count"),
                    badge(counted(len(child.sources), "pair"), "count"),
                    _stat_badges(stats.get(child.id), steps) if child.active else None,
                ),
            ),
            provenance,
        ),
    )


def _tree_section(
    tree: RewardTree, stats: dict[str, CriterionStats], steps: int, files: int
) -> Markup:
    index = {n.id: n for n in tree.nodes}
    criteria = {c.id: c for c in tree.criteria}
    parents = sorted(tree.parents, key=lambda p: (-len(p.members), p.id))
    items = []
    for parent in parents:
        kids = sorted(
            (index[c] for c in parent.children),
            key=lambda c: (c.merged_into is not None, not c.active, -len(c.members), c.id),
        )
        summarised = (
            "written by a person"
            if any(e.get("op") == "text" for e in parent.edits)
            else "summarised by the LLM from its children"
            if len(parent.children) > 1
            else "its only child's text"
        )
        items.append(
            el(
                "li",
                {
                    "class": "parent" + ("" if parent.active else " inactive"),
                    "id": f"node-{parent.id}",
                    "data-search": _search_text(parent.id, parent.text),
                },
                el(
                    "details",
                    {"class": "pnode", "open": True},
                    el(
                        "summary",
                        None,
                        el("span", {"class": "nid parent-id"}, parent.id),
                        el("span", {"class": "t"}, parent.text),
                        el(
                            "span",
                            {"class": "badges"},
                            _state_badges(parent),
                            badge(counted(len(parent.children), "child", "children"), "count"),
                            badge(counted(len(parent.members), "criterion", "criteria"), "count"),
                            badge(counted(len(parent.sources), "pair"), "count"),
                            _parent_stat_badges(parent, index, stats, steps)
                            if parent.active
                            else None,
                        ),
                    ),
                    el(
                        "div",
                        {"class": "pmeta"},
                        f"Parent text: {summarised}.",
                        _edit_history(parent),
                    ),
                    el(
                        "ul",
                        {"class": "children"},
                        [_child_item(c, criteria, stats, steps) for c in kids],
                    ),
                ),
            )
        )
    legend = (
        el(
            "p",
            {"class": "hint"},
            "Badges: how often the criterion was selected and its mean score"
            + (f", pooled over {files} scores files" if files > 1 else "")
            + "; AUROC = how well its score alone separates correct from wrong steps "
            "(0.5 = no signal). Click a child for its provenance.",
        )
        if files
        else el(
            "p",
            {"class": "hint"},
            "Click a child for its provenance: the judge's criteria it merges, the "
            "validator's reasons and the source pairs. Add --scores to see how each "
            "criterion was used.",
        )
    )
    return el(
        "section",
        {"id": "tree", "class": "panel"},
        el("h2", None, "Reward tree"),
        el(
            "div",
            {"class": "toolbar"},
            el(
                "input",
                {
                    "id": "tree-search",
                    "type": "search",
                    "placeholder": "Search criteria, ids, member criteria, source pairs…  ( / )",
                    "aria-label": "Search the tree",
                    "autocomplete": "off",
                },
            ),
            el("button", {"type": "button", "id": "expand-all"}, "Expand all"),
            el("button", {"type": "button", "id": "collapse-all"}, "Collapse all"),
            el("span", {"id": "search-count", "class": "muted", "aria-live": "polite"}),
        ),
        legend,
        el("ul", {"class": "tree"}, items)
        if items
        else el("p", {"class": "muted"}, "This tree has no criteria."),
        el("p", {"id": "no-match", "class": "muted", "hidden": True}, "No criterion matches."),
    )


# ---- criteria statistics --------------------------------------------------------------


def _node_label(tree_index: dict[str, Node], criterion_id: str) -> tuple[str, str, str]:
    """(text, level, parent) of a scored criterion id."""
    if criterion_id == CRITIC_ID:
        return ("Plain critic (dgprm score --no-tree): overall step quality", "critic", "")
    node = tree_index[criterion_id]
    return node.text, node.level, node.parent or ""


def _auroc_svg(rows: list[tuple[str, str, CriterionStats]]) -> Markup:
    """Horizontal bars from 0.5 to each criterion's AUROC (inline SVG)."""
    rows = sorted(rows, key=lambda r: -(r[2].auroc or 0))
    label_w, plot_w, row_h, top = 90, 520, 22, 26
    width, height = label_w + plot_w + 60, top + row_h * len(rows) + 8

    def x(v: float) -> float:
        return label_w + v * plot_w

    parts: list[Markup] = []
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            el(
                "line",
                {
                    "x1": f"{x(tick):.1f}",
                    "x2": f"{x(tick):.1f}",
                    "y1": top - 6,
                    "y2": height - 4,
                    "class": "axis mid" if tick == 0.5 else "axis",
                },
            )
        )
        parts.append(el("text", {"x": f"{x(tick):.1f}", "y": 14, "class": "tick"}, f"{tick:g}"))
    for i, (cid, text, s) in enumerate(rows):
        value = s.auroc or 0.5
        y = top + i * row_h
        left, right = sorted((x(0.5), x(value)))
        parts.append(
            el(
                "g",
                None,
                el("title", None, f"{cid}: AUROC {fmt(value)} — {text}"),
                el("text", {"x": label_w - 8, "y": y + 15, "class": "lab"}, cid),
                el(
                    "rect",
                    {
                        "x": f"{left:.1f}",
                        "y": y + 4,
                        "width": f"{max(right - left, 1.5):.1f}",
                        "height": row_h - 8,
                        "class": f"bar {auroc_class(value)}"
                        + (" few" if min(len(s.correct), len(s.wrong)) < FEW_LABELS else ""),
                    },
                ),
                el("text", {"x": f"{x(1) + 8:.1f}", "y": y + 15, "class": "val"}, fmt(value)),
            )
        )
    return el(
        "svg",
        {
            "class": "auroc-chart",
            "viewBox": f"0 0 {width} {height}",
            "width": width,
            "height": height,
            "role": "img",
            "aria-label": "AUROC of each criterion",
        },
        parts,
    )


def _num_cell(value: float | None, digits: int = 2, extra: Markup | None = None) -> Markup:
    return el(
        "td",
        {"class": "num", "data-v": "" if value is None else f"{value:.6f}"},
        fmt(value, digits),
        extra,
    )


def _bar(value: float | None, kind: str = "") -> Markup | None:
    if value is None:
        return None
    return el(
        "span",
        {"class": f"minibar {kind}".strip()},
        el("span", {"style": f"width:{max(0.0, min(value, 1.0)) * 100:.0f}%"}),
    )


def _criteria_section(tree: RewardTree, summary: ScoresSummary, label: str) -> Markup:
    index = {n.id: n for n in tree.nodes}
    scored_steps = summary.steps - summary.error_steps
    rows = []
    chart_rows: list[tuple[str, str, CriterionStats]] = []
    ordered = sorted(summary.stats.values(), key=lambda s: (-s.selected, s.id))
    for s in ordered:
        text, level, parent = _node_label(index, s.id)
        if s.auroc is not None:
            chart_rows.append((s.id, text, s))
        share = s.selected / scored_steps if scored_steps else None
        rows.append(
            el(
                "tr",
                None,
                el(
                    "td",
                    {"data-v": s.id},
                    el("a", {"href": f"#node-{s.id}", "class": "nid"}, s.id)
                    if s.id in index
                    else el("span", {"class": "nid"}, s.id),
                ),
                el("td", {"class": "crit-text", "title": text}, _short(text, 160)),
                el("td", {"data-v": level}, level),
                el("td", {"class": "mono", "data-v": parent}, parent),
                el(
                    "td",
                    {"class": "num", "data-v": s.selected},
                    str(s.selected),
                    el("span", {"class": "muted"}, f" {share:.0%}" if share is not None else ""),
                ),
                _num_cell(s.mean, extra=_bar(s.mean)),
                [
                    _num_cell(s.mean_correct),
                    _num_cell(s.mean_wrong),
                    _num_cell(s.gap),
                    el(
                        "td",
                        {"class": "num", "data-v": "" if s.auroc is None else f"{s.auroc:.6f}"},
                        auroc_badge(s) if s.auroc is not None else "–",
                    ),
                    el(
                        "td",
                        {"class": "num", "data-v": len(s.correct) + len(s.wrong)},
                        f"{len(s.correct)} / {len(s.wrong)}",
                    ),
                ]
                if summary.gold_steps
                else None,
            )
        )
    selectable = tree.selectable_ids()
    unused = [n for n in tree.children if n.id not in summary.stats and n.id in selectable]
    usage = summary.usage
    facts = [
        counted(summary.trajectories, "trajectory", "trajectories"),
        f"{counted(summary.steps, 'step')} ({summary.error_steps} with errors)",
        f"{summary.gold_steps} with gold labels",
        f"{usage.get('llm_calls', 0)} LLM calls, {usage.get('cache_hits', 0)} cache hits",
        f"{usage.get('prompt_tokens', 0)} + {usage.get('completion_tokens', 0)} tokens",
    ]
    head = ("criterion", "text", "level", "parent", "selected", "mean score")
    gold_heads = ("mean on correct", "mean on wrong", "Δ", "AUROC", "n correct / wrong")
    sortable = {"criterion": "text", "text": "text", "level": "text", "parent": "text"}
    return el(
        "div",
        {"class": "scores-block"},
        el("h3", None, "Criteria scored in ", el("code", None, label)),
        el("p", {"class": "facts"}, " · ".join(facts)),
        el(
            "div",
            {"class": "chart-box"},
            el(
                "h4",
                None,
                "Which criteria carry signal: AUROC of each criterion's score for "
                "“the step is correct”",
            ),
            _auroc_svg(chart_rows),
            el(
                "p",
                {"class": "muted"},
                "Bars right of the dashed line: higher scores on correct steps. Faded bars "
                f"rest on fewer than {FEW_LABELS} correct or wrong steps: unreliable.",
            ),
        )
        if chart_rows
        else el(
            "p",
            {"class": "hint"},
            "No gold step labels in these scores, so no discrimination (AUROC) is shown. "
            "Score trajectories made by `dgprm data prmbench-trajectories` or "
            "`processbench-trajectories` (they carry gold_labels), or pass the "
            "trajectories file with --trajectories."
            if not summary.gold_steps
            else f"{summary.gold_steps} steps carry gold labels, but no criterion was scored "
            "on both a correct and a wrong step, so no AUROC can be computed.",
        ),
        el(
            "div",
            {"class": "table-wrap"},
            el(
                "table",
                {"class": "grid sortable stats"},
                el(
                    "thead",
                    None,
                    el(
                        "tr",
                        None,
                        [
                            el(
                                "th",
                                {"data-sort": sortable.get(h, "num"), "scope": "col"},
                                h,
                            )
                            for h in (*head, *(gold_heads if summary.gold_steps else ()))
                        ],
                    ),
                ),
                el("tbody", None, rows),
            ),
        ),
        el(
            "p",
            {"class": "muted"},
            f"Children never scored in this file: {', '.join(n.id for n in unused)}.",
        )
        if unused
        else None,
    )


# ---- trajectories ---------------------------------------------------------------------


def _errors_table(summary: ScoresSummary) -> Markup:
    if not summary.errors:
        return el("p", {"class": "ok-note"}, "No error records: every step was scored.")
    rows = [
        el(
            "tr",
            None,
            el("td", {"class": "mono"}, e.trajectory),
            el("td", {"class": "num"}, "–" if e.step is None else str(e.step + 1)),
            el("td", {"class": "num"}, str(e.line)),
            el("td", {"class": "err-text"}, e.reason),
        )
        for e in summary.errors
    ]
    return el(
        "div",
        {"class": "errors"},
        el(
            "h4",
            None,
            f"Error records ({len(summary.errors)}): these steps have no scores; "
            "they are counted, never replaced by a default",
        ),
        el(
            "div",
            {"class": "table-wrap short"},
            _grid(["trajectory", "step", "line", "reason"], rows),
        ),
    )


def _gold_mark(gold: bool | None) -> Markup:
    if gold is None:
        return el("span", {"class": "gold na", "title": "no gold label"}, "·")
    if gold:
        return el("span", {"class": "gold yes", "title": "gold: correct step"}, "✓")
    return el("span", {"class": "gold no", "title": "gold: wrong step"}, "✗")


def _heatmap(trajectory: ScoredTrajectory, tree_index: dict[str, Node]) -> Markup:
    order: list[str] = []
    for step in trajectory.steps:
        order += [c for c in step.scores if c not in order]

    def key(cid: str) -> tuple[str, int, str]:
        node = tree_index.get(cid)
        if node is None:
            return ("", 0, cid)
        return (node.parent or node.id, 0 if node.level == "parent" else 1, cid)

    order.sort(key=key)
    has_text = any(s.text is not None for s in trajectory.steps)
    head = [el("th", None, "step"), el("th", {"title": "gold label"}, "gold")]
    if has_text:
        head.append(el("th", {"class": "steptext-h"}, "step text (hover or click for all)"))
    for cid in order:
        text = _node_label(tree_index, cid)[0] if cid in tree_index or cid == CRITIC_ID else cid
        head.append(el("th", {"class": "hm-h", "title": f"{cid}: {text}"}, cid))
    head += [el("th", None, "reward"), el("th", None, "label")]
    rows = []
    for step in trajectory.steps:
        hover = step.text if step.text is not None else f"step {step.index + 1}"
        cells = [
            el("td", {"class": "num"}, str(step.index + 1)),
            el("td", {"class": "c"}, _gold_mark(step.gold)),
        ]
        if step.error is not None:
            # one cell from the step text to the label: the step, then its error record
            cells.append(
                el(
                    "td",
                    {"class": "err-cell", "colspan": max(len(order), 1) + 2 + has_text},
                    el("div", {"class": "err-step"}, step.text) if has_text else None,
                    el("div", None, "⚠ error record (no scores): ", step.error),
                )
            )
        else:
            if has_text:
                cells.append(el("td", {"class": "steptext", "title": hover}, step.text or ""))
            for cid in order:
                if cid in step.scores:
                    value = step.scores[cid]
                    bg, ink = score_colour(value)
                    cells.append(
                        el(
                            "td",
                            {
                                "class": "hm",
                                "style": f"background:{bg};color:{ink}",
                                "title": f"{cid} = {value:.2f}",
                            },
                            f"{value:.1f}",
                        )
                    )
                else:
                    cells.append(el("td", {"class": "hm none", "title": "not selected"}, ""))
            if not order:
                cells.append(el("td", {"class": "hm none"}, ""))
        miss = step.gold is not None and step.label is not None and step.gold != step.label
        label = (
            "–"
            if step.label is None
            else el("span", {"class": "lab-ok"}, "correct")
            if step.label
            else el("span", {"class": "lab-bad"}, "wrong")
        )
        if step.error is not None:  # the error cell spans the reward and label columns
            rows.append(el("tr", {"class": "err-row", "title": hover}, cells))
            continue
        cells += [
            el("td", {"class": "num"}, fmt(step.reward)),
            el(
                "td",
                {
                    "class": "c" + (" miss" if miss else ""),
                    "title": "label differs from gold" if miss else None,
                },
                label,
            ),
        ]
        rows.append(el("tr", {"class": "err-row" if step.error else None, "title": hover}, cells))
    return el(
        "div",
        {"class": "table-wrap"},
        el(
            "table",
            {"class": "heatmap"},
            el("thead", None, el("tr", None, head)),
            el("tbody", None, rows),
        ),
    )


def _trajectory_block(
    trajectory: ScoredTrajectory, tree_index: dict[str, Node], open_: bool
) -> Markup:
    errors = len(trajectory.errors)
    golds = [s.gold for s in trajectory.steps]
    first_wrong = next((s.index + 1 for s in trajectory.steps if s.gold is False), None)
    predicted = next((s.index + 1 for s in trajectory.steps if s.label is False), None)
    facts = [
        counted(len(trajectory.steps), "step"),
        f"mean reward {fmt(trajectory.mean_reward)}",
        f"first step judged wrong: {predicted if predicted else 'none'}",
    ]
    if any(g is not None for g in golds):
        facts.append(f"first gold-wrong step: {first_wrong if first_wrong else 'none'}")
    return el(
        "details",
        {"class": "traj", "open": open_, "id": f"traj-{trajectory.id}"},
        el(
            "summary",
            None,
            el("span", {"class": "nid"}, trajectory.id),
            el("span", {"class": "facts"}, " · ".join(facts)),
            badge(counted(errors, "error"), "off") if errors else None,
        ),
        el("p", {"class": "question"}, el("b", None, "Question: "), trajectory.question)
        if trajectory.question
        else None,
        _heatmap(trajectory, tree_index),
    )


def _trajectories_section(tree: RewardTree, summaries: Sequence[ScoresSummary]) -> Markup:
    index = {n.id: n for n in tree.nodes}
    blocks = []
    for summary in summaries:
        texts = any(s.text is not None for t in summary.shown for s in t.steps)
        blocks.append(
            el(
                "div",
                {"class": "scores-block"},
                el("h3", None, "Trajectories in ", el("code", None, str(summary.path))),
                _errors_table(summary),
                el(
                    "p",
                    {"class": "hint"},
                    f"Showing {len(summary.shown)} of {summary.trajectories} trajectories "
                    "(raise --max-trajectories to see more; statistics use all of them)."
                    if len(summary.shown) < summary.trajectories
                    else f"All {counted(summary.trajectories, 'trajectory', 'trajectories')}.",
                    ""
                    if texts
                    else " Step texts are not in scores files: pass the trajectories file "
                    "with --trajectories to see them on hover.",
                ),
                _colour_legend(),
                [_trajectory_block(t, index, open_=i < 3) for i, t in enumerate(summary.shown)],
            )
        )
    return el(
        "section",
        {"id": "trajectories", "class": "panel"},
        el("h2", None, "Trajectories: step × criterion scores"),
        blocks,
    )


def _colour_legend() -> Markup:
    stops = [el("span", {"style": f"background:{score_colour(v / 10)[0]}"}) for v in range(11)]
    return el(
        "div",
        {"class": "legend"},
        "score 0",
        el("span", {"class": "ramp"}, stops),
        "1 · blank = not selected for that step · ✓/✗ = gold label · a red label cell "
        "differs from gold",
    )


# ---- bench ----------------------------------------------------------------------------

PRMBENCH_COLUMNS = (
    ("overall", "Overall"),
    ("simplicity", "Simplicity"),
    ("soundness", "Soundness"),
    ("sensitivity", "Sensitivity"),
    ("valid_rate", "valid"),
)


def _bench_config(run: BenchRun) -> list[tuple[str, str]]:
    config = run.run.get("config", {}) if isinstance(run.run, dict) else {}
    usage = run.run.get("usage", {}) if isinstance(run.run, dict) else {}
    keep = []
    for key in ("method", "llm", "embedder", "trees", "tree", "subset400", "fold", "limit"):
        if key in config and config[key] not in (None, [], ""):
            keep.append((key, str(config[key])))
    if usage:
        keep.append(
            (
                "usage",
                f"{usage.get('llm_calls', 0)} LLM calls, {usage.get('prompt_tokens', 0)} + "
                f"{usage.get('completion_tokens', 0)} tokens",
            )
        )
    keep.append(("predictions", str(run.predictions)))
    return keep


def _kv_table(rows: list[tuple[str, str]]) -> Markup:
    return el(
        "table",
        {"class": "kv"},
        el("tbody", None, [el("tr", None, el("th", None, k), el("td", None, v)) for k, v in rows]),
    )


def _value_cell(value: Any, digits: int = 1) -> Markup:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return el("td", {"class": "num"}, "–" if value is None else str(value))
    return el("td", {"class": "num"}, str(value) if isinstance(value, int) else fmt(value, digits))


def _grid(heads: Sequence[str], rows: list[Markup], kind: str = "") -> Markup:
    return el(
        "table",
        {"class": f"grid {kind}".strip()},
        el("thead", None, el("tr", None, [el("th", None, h) for h in heads])),
        el("tbody", None, rows),
    )


def _results_table(run: BenchRun) -> Markup:
    r = run.results
    if run.kind == "prmbench":
        valid = r.get("valid_rate")
        headline = [
            *(_value_cell(r.get(key)) for key, _ in PRMBENCH_COLUMNS[:-1]),
            el(
                "td",
                {"class": "num"},
                f"{100 * valid:.1f} %" if isinstance(valid, int | float) else "–",
            ),
        ]
        details = r.get("details", {})
        names = sorted(n for n in details if n != "overall") + (
            ["overall"] if "overall" in details else []
        )
        rows = [
            el(
                "tr",
                {"class": "total" if name == "overall" else None},
                el("td", None, name),
                _value_cell(details[name].get("prm_score")),
                _value_cell(details[name].get("f1"), 3),
                _value_cell(details[name].get("negative_f1"), 3),
                *(_value_cell(details[name].get(k)) for k in ("tp", "fp", "tn", "fn")),
            )
            for name in names
            if isinstance(details[name], dict)
        ]
        heads = ("category", "PRMScore", "F1", "negative F1", "TP", "FP", "TN", "FN")
        return join(
            _grid([label for _, label in PRMBENCH_COLUMNS], [el("tr", None, headline)], "headline"),
            _grid(heads, rows) if rows else None,
            el(
                "p",
                {"class": "muted"},
                "PRMScore ×100, the official metric; positive = a step judged correct. "
                f"{r.get('valid', '–')}/{r.get('predictions', '–')} predictions valid, "
                f"{r.get('items', '–')} items in the data.",
            ),
        )
    if run.kind == "processbench":
        rows = [
            el(
                "tr",
                None,
                el("td", None, name),
                *(_value_cell(d.get(k)) for k in ("acc_err", "acc_cor", "f1")),
                *(_value_cell(d.get(k)) for k in ("items", "unparseable")),
            )
            for name, d in r.items()
            if isinstance(d, dict)
        ]
        rows.append(
            el(
                "tr",
                {"class": "total"},
                el("td", None, "average F1"),
                el("td", None),
                el("td", None),
                _value_cell(r.get("average_f1")),
                el("td", None),
                el("td", None),
            )
        )
        return _grid(("subset", "acc_err", "acc_cor", "F1", "items", "unparseable"), rows)
    flat = [(k, str(v)) for k, v in r.items() if not isinstance(v, dict | list)]
    return _kv_table(flat)


def _bench_section(runs: Sequence[BenchRun]) -> Markup:
    blocks = []
    for run in runs:
        title = {"prmbench": "PRMBench", "processbench": "ProcessBench"}.get(run.kind, "Bench run")
        label = run.results.get("label")
        uri = run.chart_data_uri
        blocks.append(
            el(
                "div",
                {"class": "scores-block"},
                el("h3", None, f"{title}: ", el("code", None, str(run.path))),
                el("p", {"class": "facts"}, f"run label: {label}") if label else None,
                el(
                    "div",
                    {"class": "bench-grid"},
                    el("div", None, _results_table(run)),
                    el("div", None, _kv_table(_bench_config(run))),
                ),
                el(
                    "figure",
                    {"class": "chart"},
                    el("img", {"src": uri, "alt": f"{title} chart written by dgprm bench"}),
                    el("figcaption", None, "chart.png as written by dgprm bench"),
                )
                if uri
                else el("p", {"class": "muted"}, "This run has no chart.png."),
            )
        )
    return el(
        "section",
        {"id": "bench", "class": "panel"},
        el("h2", None, "Benchmarks"),
        blocks,
    )


# ---- build & edits --------------------------------------------------------------------


def _build_section(tree: RewardTree) -> Markup:
    rejected = [c for c in tree.criteria if not c.kept]
    error_rows = [
        el(
            "tr",
            None,
            el("td", None, str(e.get("stage", ""))),
            el("td", {"class": "mono"}, str(e.get("pair_id") or e.get("parent_id") or "")),
            el("td", {"class": "err-text"}, str(e.get("reason", e))),
        )
        for e in tree.errors
    ]
    edits = tree.manifest.get("edits", [])
    edit_rows = [
        el(
            "tr",
            None,
            el("td", None, f"v{e.get('version')}"),
            el("td", {"class": "mono"}, str(e.get("file", ""))),
            el("td", {"class": "mono"}, str(e.get("sha256", ""))[:16]),
            el("td", None, str(e.get("applied_at", ""))),
            el(
                "td",
                None,
                ", ".join(f"{k} {v}" for k, v in (e.get("changes") or {}).items()) or "none",
            ),
        )
        for e in edits
    ]

    def table(heads: Sequence[str], rows: list[Markup]) -> Markup:
        return el(
            "div",
            {"class": "table-wrap short"},
            _grid(heads, rows),
        )

    return el(
        "section",
        {"id": "build", "class": "panel"},
        el("h2", None, "Build & edits"),
        el("h3", None, f"Build errors ({len(tree.errors)})"),
        table(("stage", "pair / parent", "reason"), error_rows)
        if error_rows
        else el("p", {"class": "ok-note"}, "No LLM failures while building this tree."),
        el("h3", None, f"Criteria the validator rejected ({len(rejected)})"),
        _members_table(rejected)
        if rejected
        else el("p", {"class": "muted"}, "The validator kept every criterion."),
        el("h3", None, f"Applied edit files ({len(edits)})"),
        table(("version", "file", "sha256", "applied", "changes"), edit_rows)
        if edit_rows
        else el("p", {"class": "muted"}, "No human edits: the tree is as built."),
    )


# ---- page -----------------------------------------------------------------------------


def render_report(
    tree: RewardTree,
    *,
    tree_name: str,
    scores: Sequence[ScoresSummary] = (),
    bench: Sequence[BenchRun] = (),
    pooled: dict[str, CriterionStats] | None = None,
    inputs: Sequence[tuple[str, str]] = (),
    generated: datetime | None = None,
    progress: Progress | None = None,
) -> str:
    """The whole page as a string (see the module docstring for its structure)."""
    progress = progress or NoProgress()
    progress.start("render", 1 + len(scores) + len(bench))
    pooled = pooled or {}
    steps = sum(s.steps - s.error_steps for s in scores)
    body = [
        _header(tree, tree_name, scores),
        _nav(scores, bench),
    ]
    main = [_tree_section(tree, pooled, steps, len(scores))]
    progress.advance("render")
    if scores:
        main.append(
            el(
                "section",
                {"id": "criteria", "class": "panel"},
                el("h2", None, "Criteria: selection, scores, discrimination"),
                [_criteria_section(tree, s, str(s.path)) for s in scores],
            )
        )
        main.append(_trajectories_section(tree, scores))
        progress.advance("render", len(scores))
    if bench:
        main.append(_bench_section(bench))
        progress.advance("render", len(bench))
    main.append(_build_section(tree))
    stamp = (generated or datetime.now(UTC)).isoformat(timespec="seconds")
    footer = el(
        "footer",
        None,
        el(
            "div",
            {"class": "wrap"},
            el("p", None, f"Generated by dgprm {__version__} on {stamp}. Inputs:"),
            el(
                "ul",
                None,
                [
                    el(
                        "li",
                        None,
                        el("code", None, path),
                        " sha256 ",
                        el("code", None, digest[:16]),
                    )
                    for path, digest in inputs
                ],
            ),
        ),
    )
    page = join(
        Markup("<!DOCTYPE html>\n"),
        el(
            "html",
            {"lang": "en"},
            el(
                "head",
                None,
                el("meta", {"charset": "utf-8"}),
                el("meta", {"http-equiv": "Content-Security-Policy", "content": CSP}),
                el("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
                el("meta", {"name": "generator", "content": GENERATOR}),
                el("title", None, f"dgprm report: {tree_name}"),
                el("style", None, Markup(_asset("report.css"))),
            ),
            el(
                "body",
                None,
                body,
                el("main", {"class": "wrap"}, main),
                footer,
                el("script", None, Markup(_asset("report.js"))),
            ),
        ),
    )
    return str(page)
