"""Choosing ``auto``'s gate threshold (issue 38) on TRAINING-range seeds, never on evaluation seeds.

Run ``auto`` with ``--gate-threshold 1.0`` (it always zooms, and records plain's answer and its first-token
probability in its first step) on the tuning tasks, then this reads the run's records and replays the gate at
every threshold: below it the zoomed answer, else plain's. Printed per task and threshold: accuracy, the share
of questions zoomed, VLM calls per question; and the chosen threshold: the highest accuracy on the crowded task
among thresholds that cost nothing on shapes-vqa (accuracy ≥ plain's there). From the repository root:

    PYTHONPATH=src OMP_NUM_THREADS=1 python -m attnprompt eval \\
        --task tuning-shapes-vqa,tuning-shapes-detail-crowded-4x --vlm shapes --strategy auto \\
        --preset vicrop --form zoom --gate-threshold 1.0 --limit 200 --out /tmp/tune
    PYTHONPATH=src python docs/research/shapes/tune_gate.py /tmp/tune
"""

from __future__ import annotations

import argparse
import json
import sqlite3

import numpy as np

from attnprompt.evaluation.report import step_calls
from attnprompt.evaluation.store import RunStore
from attnprompt.text import first_word

THRESHOLDS = [round(t, 2) for t in np.arange(0.0, 1.0001, 0.05)]


def rows_of(run: str, task: str, config_hash: str) -> list[dict]:
    """Per question: plain's confidence, whether plain and the zoom were right, the zoom's calls."""
    out = []
    with RunStore(run) as store:
        for r in store.records(task, config_hash).values():
            steps = r.record.get("steps") or []
            if not steps or "gate" not in (steps[0].get("detail") or {}):
                continue
            references = r.record["sample"]["references"]
            plain = steps[0]["answer"]
            out.append({"p": steps[0]["detail"]["gate"]["confidence"],
                        "plain": plain["ok"] and first_word(plain["text"]) in references,
                        "zoom": bool(r.ok and (r.scores or {}).get("correct")),
                        "calls": sum(step_calls(s) for s in steps[1:])})
    return out


def replay(rows: list[dict], threshold: float) -> dict:
    """auto at ``threshold``: accuracy, share zoomed, calls per question."""
    zoomed = [r["p"] is None or r["p"] < threshold for r in rows]
    right = [r["zoom"] if z else r["plain"] for r, z in zip(rows, zoomed)]
    calls = [1 + (r["calls"] if z else 0) for r, z in zip(rows, zoomed)]
    return {"accuracy": round(float(np.mean(right)), 4), "zoomed": round(float(np.mean(zoomed)), 3),
            "calls": round(float(np.mean(calls)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="an eval run directory holding auto at --gate-threshold 1.0")
    ap.add_argument("--guard", default="tuning-shapes-vqa", help="the task the gate must cost nothing on")
    ap.add_argument("--gain", default="tuning-shapes-detail-crowded-4x", help="the task the gate should gain on")
    args = ap.parse_args()
    db = sqlite3.connect(f"{args.run}/records.sqlite")
    pairs = db.execute("SELECT DISTINCT task, config_hash FROM records").fetchall()
    table = {}
    for task, config_hash in pairs:
        rows = rows_of(args.run, task, config_hash)
        if not rows:
            continue
        plain = float(np.mean([r["plain"] for r in rows]))
        always = float(np.mean([r["zoom"] for r in rows]))
        table[task] = {"n": len(rows), "plain": round(plain, 4), "always_zoom": round(always, 4),
                       "by_threshold": {t: replay(rows, t) for t in THRESHOLDS}}
    guard, gain = table[args.guard], table[args.gain]
    safe = [t for t in THRESHOLDS if guard["by_threshold"][t]["accuracy"] >= guard["plain"]]
    chosen = max(safe, key=lambda t: (gain["by_threshold"][t]["accuracy"], -t)) if safe else None
    print(json.dumps({"tasks": table, "safe_thresholds": safe, "chosen": chosen}, indent=1))


if __name__ == "__main__":
    main()
