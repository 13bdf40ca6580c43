"""Every stored run is found again by its configuration hash: the hashes of 654 conditions (every
strategy × method × preset × form on the shapes tasks, map conditions, lmms-eval adapters), recorded
from the code before the spec redesign (5b95b01), must not change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnprompt.evaluation.options import EvalOptions
from attnprompt.evaluation.runner import Runner
from attnprompt.evaluation.tasks import get_task
from attnprompt.files import config_hash_of

GOLDEN = json.loads((Path(__file__).parent / "data" / "config_hashes.json").read_text())
ANSWER_TASKS = ["shapes-vqa", "shapes-pope", "shapes-detail", "shapes-detail-4x"]


def _hashes(case: str, settings: dict, tasks: list[str], kind: str) -> dict[str, str]:
    options = EvalOptions.from_settings(vlm="shapes", **settings)
    backend = options.backend.build()
    found = options.conditions.answer_conditions() if kind == "answer" else options.conditions.map_conditions()
    runner = Runner(backend, **options.runner_args())
    return {f"{case} | {t} | {c.label}": runner.plan(get_task(t), c).config_hash for t in tasks for c in found}


@pytest.mark.parametrize("case", sorted(GOLDEN["cases"]))
def test_answer_condition_hashes_are_unchanged(case):
    got = _hashes(case, GOLDEN["cases"][case], ANSWER_TASKS, "answer")
    want = {k: v for k, v in GOLDEN["hashes"].items() if k.startswith(f"{case} | ")}
    assert got == want


@pytest.mark.parametrize("case", sorted(GOLDEN["map_cases"]))
def test_map_condition_hashes_are_unchanged(case):
    got = _hashes(case, GOLDEN["map_cases"][case], ["shapes-pointing"], "map")
    want = {k: v for k, v in GOLDEN["hashes"].items() if k.startswith(f"{case} | ")}
    assert got == want


@pytest.mark.parametrize("case", sorted(GOLDEN["lmms_cases"]))
def test_lmms_adapter_hashes_are_unchanged(case):
    from attnprompt.integrations.lmms import LmmsAdapter

    adapter = LmmsAdapter.from_model_args({"vlm": "shapes", "progress": False, **GOLDEN["lmms_cases"][case]})
    got = {f"{case} | {b}": config_hash_of(adapter.describe(b)) for b in (16, 128)}
    assert got == {k: v for k, v in GOLDEN["hashes"].items() if k.startswith(f"{case} | ")}


def test_the_golden_file_covers_every_condition():
    assert len(GOLDEN["hashes"]) == 654
