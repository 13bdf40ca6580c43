"""The shared records: conversations are validated, results serialise, maps keep their raw grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from attnprompt.errors import InputError
from attnprompt.types import Answer, AttributionMap, Request, Result, Sample, Step, Turn

IMG = Image.new("RGB", (12, 10), "red")


def test_a_conversation_alternates_and_ends_with_the_user():
    r = Request.single((IMG, IMG), "Compare them.", max_new_tokens=5, system="Be brief.")
    r2 = r.then("They match.", "Which is larger?", images=IMG)
    assert r2.roles() == ("user", "assistant", "user") and r2.prompt == "Which is larger?"
    assert len(r2.images) == 3 and r2.turns[2].images == (IMG,) and r2.max_new_tokens == 5 and r2.system == "Be brief."
    with pytest.raises(InputError, match="alternates user and assistant turns, starting and ending with the user; "
                                         "got user → assistant"):
        Request((Turn("user", "a"), Turn("assistant", "b")))
    with pytest.raises(InputError, match="got assistant → user"):
        Request((Turn("assistant", "a"), Turn("user", "b")))
    with pytest.raises(InputError, match="got user → user"):
        Request((Turn("user", "a"), Turn("user", "b")))
    with pytest.raises(InputError, match="at least one user turn"):
        Request(())
    with pytest.raises(InputError, match="an assistant turn cannot show images"):
        Turn("assistant", "x", (IMG,))
    with pytest.raises(InputError, match="role must be one of user, assistant; got 'system'"):
        Turn("system", "x")
    with pytest.raises(InputError, match="max_new_tokens must be an integer ≥ 1; got 0"):
        Request.single((), "x", max_new_tokens=0)


def test_images_may_be_paths_and_arrays(tmp_path):
    IMG.save(tmp_path / "a.png")
    r = Request.single([tmp_path / "a.png", np.zeros((9, 11, 3), np.uint8)], "x")
    assert [i.size for i in r.images] == [(12, 10), (11, 9)] and all(i.mode == "RGB" for i in r.images)
    assert Sample(str(tmp_path / "a.png"), "q").images[0].size == (12, 10)


def test_a_sample_needs_a_question():
    assert Sample(IMG, "  What?  ", suffix=" Answer briefly. ").question == "What?"
    assert Sample(IMG, "What?", suffix=" Answer briefly. ").suffix == "Answer briefly."
    with pytest.raises(InputError, match="query is empty"):
        Sample(IMG, " ")


def test_a_result_serialises_to_json_with_every_step():
    first = Request.single(IMG, "What colour?")
    steps = (Step("answer", first, Answer("red", meta={"tokens": 2})),
             Step("check", first.then("red", "Sure?"), Answer("", ok=False, error="timed out")))
    baseline = Result("What colour?", Answer("blue"), (Step("answer", first, Answer("blue")),), {"strategy": "plain"})
    r = Result("What colour?", steps[1].answer, steps, {"strategy": "x", "map": {"layers": (1, 2)}}, baseline=baseline)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["answer"] == {"text": "", "ok": False, "error": "timed out", "seconds": 0.0, "model": "", "attempts": 1,
                           "meta": {}, "failure": "error"}
    assert [s["name"] for s in d["steps"]] == ["answer", "check"]
    assert d["steps"][1]["turns"] == [{"role": "user", "text": "What colour?", "images": [[12, 10]]},
                                      {"role": "assistant", "text": "red", "images": []},
                                      {"role": "user", "text": "Sure?", "images": []}]
    assert d["config"]["map"]["layers"] == [1, 2] and d["baseline"]["answer"]["text"] == "blue"
    assert r.text == "" and r.annotation is None


def test_an_attribution_map_keeps_its_raw_grid():
    raw = np.array([[0.2, 0.4], [0.1, 0.3]])
    m = AttributionMap(np.array([[0.25, 0.75], [0.0, 1.0]]), raw=raw, extent=(0, 0.25, 1, 0.75))
    assert m.grid.dtype == np.float32 and m.raw is not None and np.array_equal(m.raw, raw)
    assert m.extent == (0.0, 0.25, 1.0, 0.75)
    assert np.array_equal(AttributionMap(np.ones((2, 3))).raw, np.ones((2, 3)))  # no separate raw: the grid
    with pytest.raises(ValueError, match="same shape"):
        AttributionMap(np.ones((2, 2)), raw=np.ones((3, 3)))
