"""Resumable batch annotation: a JSONL of (image, query, id) → one output set per item.

Layout of the output directory::

    DIR/ID.png            annotated image          (written atomically)
    DIR/ID.npy            heatmap, float32 H×W      (written atomically)
    DIR/ID.visual.png     optional side-by-side picture
    DIR/results.jsonl     one line per finished item (appended after its files exist)
    DIR/failures.jsonl    items that failed in the last run, with the reason
    DIR/config.json       the full configuration of the run

An item counts as finished when its manifest line exists and its files are present, so a
run killed at any point resumes without losing or duplicating work: files written but not
yet recorded are simply redone (atomically overwritten) and recorded once.
"""

from __future__ import annotations

import json
import os
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import AttnpromptError, InputError, OutputError
from .files import DirectoryLock, append_jsonl, read_jsonl, remove_stale_temporaries, save_jsonl

MANIFEST = "results.jsonl"
FAILURES = "failures.jsonl"
CONFIG = "config.json"
#: Characters an id may not hold, since it names the item's files: path separators, characters Windows refuses
#: in file names, and control characters (checked apart).
_UNSAFE = set('/\\:*?"<>|')


def check_item_id(item_id: str) -> str:
    """An item id that can name its files on any system: letters of any script, digits, spaces inside and
    punctuation other than path separators, ``:*?"<>|`` and control characters; not starting with a dot or a
    space; at most 128 bytes in UTF-8 (file names are limited in bytes).

    >>> check_item_id("chat-07"), check_item_id("图像 1"), check_item_id("café_été")
    ('chat-07', '图像 1', 'café_été')
    >>> check_item_id("../up")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    attnprompt.errors.InputError: id '../up' cannot be a file name: '/' separates folders; use letters, digits, ...
    """
    bad = next((c for c in item_id if c in _UNSAFE or unicodedata.category(c).startswith("C")), None)
    why = None
    if not item_id or not item_id.strip():
        why = "it is empty"
    elif bad is not None:
        why = "'/' separates folders" if bad in "/\\" else f"it holds {bad!r}"
    elif item_id[0] in ". " or item_id[-1] in ". ":
        why = "it starts or ends with a dot or a space"
    elif len(item_id.encode("utf-8")) > 128:
        why = f"it is {len(item_id.encode('utf-8'))} bytes long"
    if why is not None:
        raise InputError(f"id {item_id!r} cannot be a file name: {why}; use letters, digits, spaces and '.', '_', "
                         "'-' (≤ 128 bytes, not starting with a dot or a space)")
    return item_id


@dataclass
class BatchItem:
    """One line of the batch file.

    >>> BatchItem("a", "img.png", "the star", 1).id
    'a'
    """

    id: str
    image: str
    query: str
    line: int


@dataclass
class BatchReport:
    """What a batch run did.

    >>> BatchReport(total=3, done=2, skipped=1).summary()
    '3 items: 2 annotated, 1 already done (skipped), 0 failed'
    """

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One-line summary, plus one line per failure.

        >>> BatchReport(total=1, failed=[{"id": "x", "line": 1, "error": "no such file"}]).summary().splitlines()[1]
        '  failed x (line 1): no such file'
        """
        head = (f"{self.total} items: {self.done} annotated, {self.skipped} already done (skipped), "
                f"{len(self.failed)} failed")
        if self.seconds:
            head += f" in {self.seconds:.1f} s"
        lines = [head] + [f"  failed {f['id']} (line {f['line']}): {f['error']}" for f in self.failed]
        return "\n".join(lines)


def read_batch(path: str | os.PathLike) -> tuple[list[BatchItem], list[dict[str, Any]]]:
    """Parse a JSONL batch file → (valid items, problems). Relative image paths are taken
    relative to the batch file's directory. A line that is not UTF-8, not a JSON object, or not a
    valid item is a problem of its own; the other lines are read.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "b.jsonl"
    >>> _ = p.write_bytes(b'{"image": "a.png", "query": "the star", "id": "s1"}\\n{"query": ""}\\n\\xff\\n')
    >>> items, bad = read_batch(p)
    >>> items[0].id, [(b["line"], b["error"][:21]) for b in bad]
    ('s1', [(2, "missing 'image' (a pa"), (3, 'not UTF-8 text (byte ')])
    """
    from .checks import check_query

    path = Path(path)
    if not path.is_file():
        raise InputError(f"--batch {path}: no such file; give a JSONL file with one {{image, query, id}} per line")
    base = path.parent
    items: list[BatchItem] = []
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            try:
                raw = line.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                problems.append({"id": f"line{n}", "line": n,
                                 "error": f"not UTF-8 text (byte 0x{line[e.start]:02x} at column {e.start + 1})"})
                continue
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                problems.append({"id": f"line{n}", "line": n, "error": f"not valid JSON ({e})"})
                continue
            item_id = str(obj.get("id", f"{n:06d}"))
            try:
                check_item_id(item_id)
                if item_id in seen:
                    raise InputError(f"id {item_id!r} appears more than once; ids must be unique")
                image, query = obj.get("image"), obj.get("query")
                if not isinstance(image, str) or not image.strip():
                    raise InputError("missing 'image' (a path to an image file)")
                if not isinstance(query, str) or not query.strip():
                    raise InputError("missing or empty 'query'")
                query = check_query(query)
            except InputError as e:
                problems.append({"id": item_id, "line": n, "error": str(e)})
                continue
            seen.add(item_id)
            img = Path(image).expanduser()
            items.append(BatchItem(item_id, str(img if img.is_absolute() else base / img), query, n))
    return items, problems


def _outputs(directory: Path, item_id: str, visuals: bool) -> dict[str, Path]:
    out = {"annotated": directory / f"{item_id}.png", "heatmap": directory / f"{item_id}.npy"}
    if visuals:
        out["visual"] = directory / f"{item_id}.visual.png"
    return out


def load_manifest(directory: Path) -> dict[str | None, dict[str, Any]]:
    """Finished items recorded in ``DIR/results.jsonl``, by id (a torn last line is dropped and repaired).

    >>> import tempfile, pathlib
    >>> load_manifest(pathlib.Path(tempfile.mkdtemp()))
    {}
    """
    done: dict[str | None, dict[str, Any]] = {}
    for record in read_jsonl(directory / MANIFEST):
        done.setdefault(record.get("id"), record)
    return done


def _append_manifest(directory: Path, record: dict[str, Any]) -> None:
    # the one place an item becomes finished (tests interrupt runs here)
    append_jsonl(directory / MANIFEST, record)


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs: ``batch_size`` images per forward, ``visuals`` (also ID.visual.png), ``progress``
    bars (None: when attached to a terminal), ``overwrite`` (recompute items made with other settings)."""

    batch_size: int = 8
    visuals: bool = False
    progress: bool | None = None
    overwrite: bool = False


def run_batch(batch_file: str | os.PathLike, out_dir: str | os.PathLike, options: BatchOptions | None = None,
              **settings: Any) -> BatchReport:
    """Annotate every item of ``batch_file`` into ``out_dir``, skipping items already finished; ``settings``
    are :func:`attnprompt.annotate`'s (``method``, ``model``, ``preset``, ``gray``, ``resample``, ``device``,
    ``dtype`` and the method's parameters).

    The model is loaded once, and only when there is work; items go through it ``batch_size`` at a
    time; a bad item is recorded in ``failures.jsonl`` and skipped, the others complete. A finished
    item is reused only when it was made with the same settings (:func:`batch_settings`); items
    made with other settings are an error that says what changed, unless ``overwrite`` recomputes them.

    >>> import tempfile
    >>> from attnprompt.shapes import make_scene
    >>> d = Path(tempfile.mkdtemp()); make_scene(7, n_objects=5, size=320).image.save(d / "scene.png")
    >>> _ = (d / "items.jsonl").write_text(json.dumps({"image": "scene.png", "query": "the circle", "id": "c"}) + "\\n")
    >>> options = BatchOptions(progress=False)
    >>> print(run_batch(d / "items.jsonl", d / "out", options, model="shapes").summary().split(" in ")[0])
    1 items: 1 annotated, 0 already done (skipped), 0 failed
    """
    from .annotation import check_rendering
    from .checks import check_count
    from .files import check_writable, config_hash_of

    options = options or BatchOptions()
    check_count("batch_size", options.batch_size)
    t0 = time.perf_counter()
    run = _BatchRun.of(settings)
    run.gray = check_rendering(run.gray, run.resample)
    key = config_hash_of(run.settings)  # bad settings have failed by now
    items, problems = read_batch(batch_file)
    directory = _output_directory(out_dir)
    check_writable(directory / MANIFEST, "--out-dir")
    report = BatchReport(total=len(items) + len(problems), failed=list(problems))
    with DirectoryLock(directory):
        remove_stale_temporaries(directory)
        todo = _todo(directory, items, key, run.settings, options, report)
        if todo:
            _annotate_all(directory, todo, run, key, options, report)
        report.failed.sort(key=lambda f: f["line"])  # bad lines are found first, failed images later
        if report.failed:
            save_jsonl(directory / FAILURES, report.failed)
        elif (directory / FAILURES).exists():
            (directory / FAILURES).unlink()
    report.seconds = time.perf_counter() - t0
    return report


@dataclass
class _BatchRun:
    """A batch's annotation settings, split as :func:`attnprompt.annotate` takes them."""

    method: str
    model: Any
    preset: str | None
    params: dict[str, Any]
    gray: float
    resample: str
    loading: Any
    settings: dict[str, Any]

    @classmethod
    def of(cls, settings: dict[str, Any]) -> _BatchRun:
        given = dict(settings)
        from .models import LoadOptions

        named = {k: given.pop(k, d) for k, d in (("method", "api-clip"), ("model", None), ("preset", None),
                                                  ("gray", 0.0), ("resample", "bilinear"))}
        loading = LoadOptions.of(given.pop("loading", None), device=given.pop("device", None),
                                 dtype=given.pop("dtype", None))
        params = {**given.pop("params", {}), **given}  # the method's parameters (``params=`` kept for old callers)
        recorded = batch_settings(named["method"], named["model"], named["preset"], params, named["gray"],
                                  named["resample"])
        return cls(params=params, settings=recorded, loading=loading, **named)


def _output_directory(out_dir: str | os.PathLike) -> Path:
    directory = Path(out_dir)
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"--out-dir {directory} is a file; give a directory (it is created if missing)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create --out-dir {directory}: {e.strerror or e}") from None
    return directory


def _todo(directory: Path, items: list[BatchItem], key: str, settings: dict[str, Any], options: BatchOptions,
          report: BatchReport) -> list[BatchItem]:
    """The items to annotate now: not finished with these settings, or with a file gone; items finished with
    other settings are an error unless ``overwrite``; an image that does not exist fails before any model loads."""
    from .files import config_changes

    done = load_manifest(directory)
    other = [i for i in done if i in {it.id for it in items} and done[i].get("settings") != key]
    if other and not options.overwrite:
        previous = _previous_settings(directory)
        changed = config_changes(previous, _flatten(settings)) if previous else "they were not recorded"
        raise InputError(
            f"{len(other)} finished item(s) in {directory} were made with other settings ({changed}); "
            "rerun with --overwrite to recompute them with these settings, or pick another --out-dir"
        )
    todo, redo = [], []
    for it in items:
        outs = _outputs(directory, it.id, options.visuals)
        if it.id in done and done[it.id].get("settings") == key and all(p.exists() for p in outs.values()):
            report.skipped += 1
            continue
        if not Path(it.image).is_file():
            report.failed.append({"id": it.id, "line": it.line,
                                  "error": f"{it.image}: no such file; give the path of an existing image file"})
            continue
        todo.append(it)
        if it.id in done:
            redo.append(it.id)  # other settings, or a file has gone: redo it, record it once
    if redo:
        save_jsonl(directory / MANIFEST, [r for i, r in done.items() if i not in set(redo)])
    return todo


def _annotate_all(directory: Path, todo: list[BatchItem], run: _BatchRun, key: str, options: BatchOptions,
                  report: BatchReport) -> None:
    """Load the model once and annotate ``todo`` ``batch_size`` items at a time, each item's files written
    atomically and then recorded in the manifest."""
    from tqdm.auto import tqdm

    from .attribution import get_attributor
    from .files import save_json
    from .images import load_image

    attributor = get_attributor(run.method, model=run.model, loading=run.loading, preset=run.preset, **run.params)
    save_json({**attributor.describe(), "gray": run.gray, "resample": run.resample, "settings": run.settings,
               "fingerprint": key}, directory / CONFIG)
    bar = tqdm(total=len(todo), unit="item", desc="annotate", disable=options.progress is False or None)
    try:
        for start in range(0, len(todo), options.batch_size):
            ready = []
            for it in todo[start : start + options.batch_size]:
                try:
                    ready.append((it, load_image(it.image)))
                except AttnpromptError as e:
                    report.failed.append({"id": it.id, "line": it.line, "error": str(e)})
                    bar.update(1)
            for it, ann in _annotate(attributor, ready, report, run.gray, run.resample):
                _write_item(directory, it, ann, key, options.visuals)
                report.done += 1
                bar.update(1)
    finally:
        bar.close()


def _write_item(directory: Path, it: BatchItem, ann: Any, key: str, visuals: bool) -> None:
    from .files import array_file, atomic_write_all, image_file

    outs = _outputs(directory, it.id, visuals)
    files = [image_file(ann.image, outs["annotated"]), array_file(ann.heatmap, outs["heatmap"])]
    if visuals:
        files.append(image_file(ann.visual(), outs["visual"]))
    atomic_write_all(files)  # all of the item's outputs, or none
    _append_manifest(directory, {"id": it.id, "image": it.image, "query": it.query,
                                 **{k: p.name for k, p in outs.items()}, "grid_shape": list(ann.attribution.shape),
                                 "settings": key})


def batch_settings(method: str, model: Any, preset: str | None, params: dict[str, Any], gray: float,
                   resample: str) -> dict[str, Any]:
    """Everything that decides a batch item's outputs, without loading the model: the method, the
    model as named, every method parameter (defaults and preset applied, so a bad one fails here)
    and the rendering. A built attributor is described as it is.

    >>> batch_settings("api-clip", "shapes", None, {"kernel": 1}, 0.0, "bilinear")["config"]["kernel"]
    1
    """
    from .attribution.base import Attributor
    from .attribution.configs import METHODS

    if isinstance(model, Attributor):
        if params or preset:
            raise InputError("parameters were given with an already built attributor; give them when building it")
        config = model.describe()
        method, model = config.pop("method"), config.pop("model")
    else:
        config = METHODS.config(method).from_preset(preset, **params).to_dict()
        if model is not None and not isinstance(model, str):
            model = getattr(model, "model_id", type(model).__name__)
    return {"method": method, "model": model, "config": config, "gray": float(gray), "resample": resample}


def _previous_settings(directory: Path) -> dict[str, Any] | None:
    try:
        settings = json.loads((directory / CONFIG).read_text(encoding="utf-8")).get("settings")
    except (OSError, ValueError, AttributeError):
        return None
    return _flatten(settings) if isinstance(settings, dict) else None


def _flatten(settings: dict[str, Any]) -> dict[str, Any]:
    # one level, so that a message says "kernel: 3 → 1" rather than quoting two whole configs
    return {**{k: v for k, v in settings.items() if k != "config"}, **settings.get("config", {})}


def _annotate(attributor: Any, ready: list, report: BatchReport, gray: float, resample: str) -> list:
    """Annotate a chunk in one forward; if that fails, retry item by item to isolate the bad one."""
    from .annotation import annotate_images

    if not ready:
        return []
    try:
        anns = annotate_images(
            attributor, [img for _, img in ready], [it.query for it, _ in ready], gray=gray, resample=resample
        )
        return [(it, a) for (it, _), a in zip(ready, anns)]
    except AttnpromptError:
        out = []
        for it, img in ready:
            try:
                [a] = annotate_images(attributor, [img], [it.query], gray=gray, resample=resample)
                out.append((it, a))
            except AttnpromptError as e:
                report.failed.append({"id": it.id, "line": it.line, "error": str(e)})
        return out
