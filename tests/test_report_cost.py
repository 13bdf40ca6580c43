"""The report's cost beside accuracy (VLM calls per question in the tables, seconds per question in
``cost.md``), the crop table for searched crops, and the gallery's search path — from records whose search
detail comes from the search core itself."""

from __future__ import annotations

import io
import json

from PIL import Image

from attnprompt.evaluation.report import write_report
from attnprompt.evaluation.store import Record, RunStore
from attnprompt.evaluation.tasks import generic_task
from attnprompt.search import SearchSettings, search


def jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG")
    return buf.getvalue()


def test_cost_crops_and_the_search_path_are_reported(tmp_path):
    image = Image.new("RGB", (512, 512), (90, 90, 90))
    task = generic_task([{"image": image, "question": "What colour is the star?", "answer": "red"},
                         {"image": image, "question": "What colour is the cross?", "answer": "blue"}],
                        name="crowd", metric="first-word")
    samples = task.samples()
    target = (400, 100)

    def stub(probes):
        inside = [p.box[0] <= target[0] < p.box[2] and p.box[1] <= target[1] < p.box[3] for p in probes]
        return [(0.9 if hit and p.depth == 2 else -0.5) if p.kind == "answering" else (0.8 if hit else -0.5)
                for p, hit in zip(probes, inside)]

    found = search((512, 512), stub, SearchSettings(budget=30, native_side=128, priority=("existence",)))
    assert found.stop == "confident" and found.calls == 11 and found.box == (384, 0, 512, 128)
    detail = {"calls": found.calls, "box": list(found.view), "search": found.to_detail()}

    def record(sample, condition, prediction, correct, steps, seconds):
        body = {"sample": {**sample.describe(), "meta": {"box": [390, 90, 410, 110]}}, "prompts": [], "steps": steps}
        return Record("crowd", sample.id, condition, condition, True, prediction, scores={"correct": correct},
                      record=body, seconds=seconds)

    plain_steps = [{"name": "answer", "annotations": [], "detail": {}}]
    search_steps = [{"name": "search", "annotations": [], "detail": detail},
                    {"name": "answer", "annotations": [], "detail": {"box": list(found.view)}}]
    records = [record(samples[0], "plain", "blue", 0.0, plain_steps, 0.25),
               record(samples[1], "plain", "blue", 1.0, plain_steps, 0.75),
               record(samples[0], "zoom-search", "red", 1.0, search_steps, 2.0),
               record(samples[1], "zoom-search", "red", 0.0, search_steps, 3.0)]
    out = tmp_path / "run"
    with RunStore(out) as store:
        store.put(records, images=[("crowd", s.id, "", "original0", jpeg(image)) for s in samples])
        store.set_meta("plan", {"tasks": [{"name": "crowd", "spec": None, "samples": [s.id for s in samples],
                                           "conditions": [{"label": "plain", "config_hash": "plain"},
                                                          {"label": "zoom-search", "config_hash": "zoom-search"}]}]})
        written = write_report(out, tasks=[task], store=store)
    assert out / "cost.md" in written
    cost = (out / "cost.md").read_text()
    assert "| plain | 0.500 | 1.00 | 0.500 | 2 |" in cost
    assert "| zoom-search | 0.500 | 12.00 | 2.500 | 2 |" in cost  # 11 probes and 1 answer per question
    md = (out / "report.md").read_text()
    assert "VLM calls / q" in md and "| 12.00 |" in md and "seconds / q" not in md  # wall time only in cost.md
    assert "| zoom-search | 2 | 0.062 | 1.000 |" in md  # the searched crop: 1/16 of the image, holding the object
    report = json.loads((out / "report.json").read_text())
    by = {c["label"]: c for c in report["tasks"][0]["conditions"]}
    assert by["zoom-search"]["cost"] == {"n": 2, "calls": 12.0}  # seconds stay out: they differ run to run
    html = (out / "report.html").read_text()
    assert 'alt="zoom-search search path"' in html and 'alt="plain search path"' not in html
