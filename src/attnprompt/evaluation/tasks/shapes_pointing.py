"""shapes-pointing — does a map point at the object a query names?

Source: the offline testbed, seeds :data:`attnprompt.shapes.splits.POINTING` (held out), 3–6
objects at 224 px. Each sample is one scene and two of its objects, each named by a query that
singles it out ("the red star"). Run for map methods (and presets), not strategies. Per query:

- ``pointing``: the heatmap's maximum lies inside the named object's box;
- ``mass``: the share of the heatmap's mass on the object's visible pixels;
- ``crop_holds``: the crop box the map's regions select (CARVE's rule unless told) holds the object's
  box whole, and ``crop_share`` that box's share of the image (a whole-image box holds everything);

per sample ``two_queries``: both queries' maps peak on their own objects; and, for scale, the
``centre`` baseline: the image centre lies inside the object's box.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...shapes import make_scene, pointing_query
from ...shapes.splits import POINTING
from ..metrics import mean_of
from ..pointing import centre_hits, in_box, mass_in_mask, peak
from .base import EvalSample, Task

SCENES = 300
SIZE = 224


def scene_row(seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    scene = make_scene(seed, n_objects=int(rng.integers(3, 7)), size=SIZE)
    first, second = (int(i) for i in rng.choice(len(scene.objects), 2, replace=False))
    return {"seed": seed, "scene": scene, "targets": (first, second)}


def rows(limit: int | None) -> list[dict[str, Any]]:
    """One row per scene: the first ``limit`` scenes (default :data:`SCENES`)."""
    return [scene_row(seed) for seed in POINTING.seeds(limit if limit is not None else SCENES)]


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    scene, targets = row["scene"], row["targets"]
    queries = tuple(pointing_query(scene, i) for i in targets)
    return EvalSample(str(row["seed"]), scene.image, queries[0], queries=queries,
                      meta={"seed": row["seed"], "objects": [scene.objects[i].name for i in targets],
                            "boxes": [list(scene.objects[i].box) for i in targets]},
                      truth=tuple(scene.objects[i] for i in targets))


def score(annotations: Sequence[Any], sample: EvalSample) -> dict[str, float]:
    hits, mass, holds, share, centre = [], [], [], [], []
    size = sample.images[0].size
    for annotation, obj in zip(annotations, sample.truth):
        hits.append(in_box(peak(annotation.heatmap), obj.box))
        mass.append(mass_in_mask(annotation.heatmap, obj.mask))
        centre.append(centre_hits(obj.box, size))
        if annotation.box is not None:
            x0, y0, x1, y1 = annotation.box
            b = obj.box
            holds.append(x0 <= b[0] and y0 <= b[1] and x1 >= b[2] and y1 >= b[3])
            share.append((x1 - x0) * (y1 - y0) / (size[0] * size[1]))
    out = {"pointing": float(np.mean(hits)), "two_queries": float(all(hits)), "mass": float(np.mean(mass)),
           "centre": float(np.mean(centre)), "correct": float(np.mean(hits))}
    if holds:
        out.update(crop_holds=float(np.mean(holds)), crop_share=float(np.mean(share)))
    return out


def aggregate(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    names = ("pointing", "two_queries", "mass", "crop_holds", "crop_share", "centre")
    return {name: mean_of(name)(columns) for name in names if name in columns}


TASK = Task("shapes-pointing", f"attnprompt.shapes, seeds {POINTING.start}… ({SCENES} scenes by default)", rows,
            to_sample, score, aggregate, headline="pointing", kind="map",
            notes="Targets: the grounding preset (which exists to localise) points ≥ 0.8, and ≥ 0.8 with two "
            "queries; reference and paper keep every object visible by design and are judged by what they do to "
            "answers. centre: the image centre as a pointer, for scale.")
