"""Research (issue 38): the paired 95 % bootstrap of an accuracy difference between two conditions of one task,
each from a run folder's records, resampling scenes (a scene's questions stay together), as the report does.

    python docs/research/shapes/paired_runs.py shapes-detail-crowded-4x runs/crowded "carve (vicrop, zoom)" \
        runs/crowded "zoom-search (carve, vicrop, zoom)"
"""
import json
import sqlite3
import sys

import numpy as np


def correct(run, task, cond):
    db = sqlite3.connect(f"{run}/records.sqlite")
    return {sid: json.loads(s)["correct"] for sid, ok, s in db.execute(
        "select sample_id, ok, scores from records where task=? and condition=?", (task, cond)) if ok and s}

task, ra, a, rb, b = sys.argv[1:6]
A, B = correct(ra, task, a), correct(rb, task, b)
common = sorted(set(A) & set(B))
scene = np.array([s.split("/")[0] for s in common])
d = np.array([B[s] - A[s] for s in common])
ids = np.unique(scene)
rng = np.random.default_rng(0)
groups = {i: d[scene == i] for i in ids}
means = [np.concatenate([groups[i] for i in rng.choice(ids, len(ids))]).mean() for _ in range(4000)]
low, high = np.percentile(means, [2.5, 97.5])
print(f"{task}: {b} − {a}: {d.mean():+.3f} [{low:+.3f}, {high:+.3f}] n {len(common)}")
