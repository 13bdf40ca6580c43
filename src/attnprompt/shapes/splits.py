"""Every seed range of the shapes testbed, named once: what trains the shipped models, and what
is held out for their evaluation, the benchmarks and the tests.

A scene is ``make_scene(seed, …)``, so a seed range is a set of scenes. Training draws from seeds
≥ :data:`TRAINING_START` (``tools/shapes_training/testbed.py`` says where); every held-out range lies
below it and no two overlap (tested), so no evaluation scene was ever trained on.

>>> VLM_EVAL.seeds(3)
range(700000, 700003)
"""

from __future__ import annotations

from dataclasses import dataclass

#: Seeds at and above this are for training only.
TRAINING_START = 1_000_000


@dataclass(frozen=True)
class SeedRange:
    """``size`` consecutive held-out seeds from ``start``, and what they are for.

    >>> SeedRange("x", 10, 5, "an example").seeds()
    range(10, 15)
    """

    name: str
    start: int
    size: int
    use: str

    def seeds(self, n: int | None = None) -> range:
        """The first ``n`` seeds of the range (all of them by default).

        >>> POINTING.seeds(2)
        range(100000, 100002)
        """
        n = self.size if n is None else int(n)
        if not 0 <= n <= self.size:
            raise ValueError(f"{self.name}: {n} seeds asked for, the range holds {self.size}")
        return range(self.start, self.start + n)

    @property
    def stop(self) -> int:
        """One past the last seed.

        >>> VLM_EVAL.stop
        800000
        """
        return self.start + self.size


POINTING = SeedRange("pointing", 100_000, 100_000, "the shapes-pointing task (attnprompt.evaluation.tasks)")
SHAPES_VQA = SeedRange("shapes-vqa", 200_000, 100_000, "the shapes-vqa task (attnprompt.evaluation.tasks)")
SHAPES_POPE = SeedRange("shapes-pope", 400_000, 100_000, "the shapes-pope task (attnprompt.evaluation.tasks)")
TOWER_VALIDATION = SeedRange("tower-validation", 300_000, 100_000,
                             "held-out per-patch accuracy of the vision-tower fine-tune")
CLIP_RETRIEVAL_EVAL = SeedRange("clip-retrieval-eval", 500_000, 100_000,
                                "held-out retrieval precision printed while the shapes CLIP trains")
CLIP_POINTING_EVAL = SeedRange("clip-pointing-eval", 600_000, 100_000,
                               "held-out pointing printed while the shapes CLIP trains")
SHAPES_DETAIL = SeedRange("shapes-detail", 800_000, 100_000,
                          "the shapes-detail tasks: scenes pasted into larger canvases (attnprompt.evaluation.tasks)")
CROWDED = SeedRange("shapes-detail-crowded", 10_000, 40_000,
                    "the crowded shapes-detail tasks' target scenes (attnprompt.shapes.crowded)")
CROWDED_DISTRACTORS = SeedRange("shapes-detail-crowded-distractors", 50_000, 50_000,
                                "the other scenes around the target on the crowded shapes-detail canvases")
VLM_EVAL = SeedRange("vlm-eval", 700_000, 100_000,
                     "held-out accuracy per question kind printed while the shapes VLM trains")
CLIP_RETRIEVAL_TEST = SeedRange("clip-retrieval-test", 900_000, 50_000,
                                "the test that the shipped CLIP beats chance at retrieval")
POINTING_TEST = SeedRange("pointing-test", 950_000, 10_000, "the test that the shipped CLIP points at large objects")
VLM_ANSWER_TEST = SeedRange("vlm-answer-test", 960_000, 40_000,
                            "the test that the shipped VLM answers colour questions on fixed scenes")

#: Training-range seeds (at and above :data:`TRAINING_START`, so never an evaluation scene) on which defaults
#: are chosen — ``auto``'s gate threshold, ``zoom-search``'s budget — never on evaluation seeds (issue 38).
TUNING = SeedRange("tuning", TRAINING_START, 100_000,
                   "choosing defaults (the tuning-* tasks' target scenes): training-range seeds, never evaluated")
TUNING_DISTRACTORS = SeedRange("tuning-distractors", TRAINING_START + 100_000, 100_000,
                               "the other scenes around the target on the tuning crowded canvases")

HELD_OUT: tuple[SeedRange, ...] = (
    CROWDED, CROWDED_DISTRACTORS,
    POINTING, SHAPES_VQA, SHAPES_POPE, TOWER_VALIDATION, CLIP_RETRIEVAL_EVAL, CLIP_POINTING_EVAL, VLM_EVAL,
    SHAPES_DETAIL,
    CLIP_RETRIEVAL_TEST, POINTING_TEST, VLM_ANSWER_TEST,
)
