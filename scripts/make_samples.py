"""Regenerate the small samples shipped in src/dgprm/samples from ../shared/data.

Usage: python scripts/make_samples.py [SHARED_DATA_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dgprm.data import prmbench_pairs
from dgprm.downstream.tasks import DIRECTORIES, FILES, sample_file
from dgprm.files import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "dgprm" / "samples"


def short_records(path: Path, count: int, max_steps: int = 8) -> list[dict]:
    rows = []
    for line in path.open(encoding="utf-8"):
        record = json.loads(line)
        if len(record["modified_process"]) <= max_steps and record["question"] not in {
            r["question"] for r in rows
        }:
            rows.append(record)
        if len(rows) == count:
            break
    return rows


def task_samples(shared: Path, count: int = 4) -> int:
    """The first ``count`` records of every split of each downstream task, unchanged (in
    their source format, so the same loaders read them); the ARC test sample also gets the
    first record with numeric choice labels."""
    written = 0
    for task, splits in FILES.items():
        directory = shared / DIRECTORIES[task]
        for split, name in splits.items():
            target = sample_file(task, split)
            if name.endswith(".jsonl"):
                rows = [json.loads(line) for line in (directory / name).open(encoding="utf-8")]
                picks = rows[:count]
                if split == "test":
                    picks += [r for r in rows if r["answerKey"].isdigit()][:1]
                write_jsonl(target, picks)
            else:
                picks = json.loads((directory / name).read_text(encoding="utf-8"))[:count]
                target.write_text(json.dumps(picks, ensure_ascii=False, indent=1) + "\n")
            written += len(picks)
    return written


def main() -> None:
    shared = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT.parent / "shared" / "data")
    data = shared / "prmbench" / "data"
    records = []
    for index, file in enumerate(sorted(data.glob("prm800k_test_p1_*.jsonl"))):
        records += short_records(file, 2 + index % 2)[-2:]
    records += short_records(data / "prm_test_p12_multi_solutions.jsonl", 2)
    write_jsonl(OUT / "prmbench_records.jsonl", records)
    pairs = prmbench_pairs(OUT / "prmbench_records.jsonl")
    seen: set[str] = set()
    chosen = []
    for pair in pairs:
        category = pair["id"].split("_prm")[0]
        if category not in seen:
            seen.add(category)
            chosen.append(pair)
    write_jsonl(OUT / "pairs.jsonl", chosen)
    items = json.loads((shared / "processbench" / "gsm8k.json").read_text())
    picks = [i for i in items if i["label"] == -1][:2] + [i for i in items if i["label"] >= 0][:2]
    (OUT / "processbench_gsm8k.json").write_text(json.dumps(picks, ensure_ascii=False, indent=1))
    write_jsonl(
        OUT / "trajectories.jsonl",
        [{"id": i["id"], "question": i["problem"], "steps": i["steps"]} for i in picks],
    )
    write_jsonl(  # the first step of each solution; candidates continue from step 2
        OUT / "prefixes.jsonl",
        [{"id": f"{i['id']}/1", "question": i["problem"], "steps": i["steps"][:1]} for i in picks],
    )
    print(f"{len(records)} PRMBench records, {len(chosen)} pairs, {len(picks)} ProcessBench items")
    print(f"{task_samples(shared)} downstream task records")


if __name__ == "__main__":
    main()
