"""A generic VQA task over your own data: a JSONL, JSON or CSV file, a Hugging Face dataset (hub id
or a ``save_to_disk`` directory), or rows in code — with a column mapping and a chosen metric.

    attnprompt eval --task vqa --data my.jsonl --columns image=img,question=q,answer=answers \\
        --metric vqa --vlm shapes --strategy plain,api --out runs/mine

Images may be paths (relative to ``images_root``, default the data file's folder), PIL images, or a
Hugging Face ``Image`` value; an answer column may hold one answer or a list of them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import InputError, import_optional
from ..metrics import exact_match, first_word_match, mean_of, pope_metrics, vqa_accuracy, yes_no_scores
from .base import EvalSample, Task
from .sources import SAVED, looks_local

#: Column roles and the column each is read from unless ``columns`` says otherwise.
DEFAULT_COLUMNS = {"image": "image", "question": "question", "answer": "answer", "id": "id", "category": "category"}
#: The key under which a row carries its number in the data (the sample id when the row has none).
ROW_NUMBER = "__row__"
#: Key of a row that could not be read, holding why (its sample fails alone).
ROW_ERROR = "__error__"


def _exact(pred: str, s: EvalSample) -> dict[str, float]:
    return {"correct": exact_match(pred, s.references)}


def _first_word(pred: str, s: EvalSample) -> dict[str, float]:
    return {"correct": first_word_match(pred, s.references)}


def _vqa(pred: str, s: EvalSample) -> dict[str, float]:
    return {"correct": vqa_accuracy(pred, s.references)}


def _yes_no(pred: str, s: EvalSample) -> dict[str, float]:
    gold = s.references[0].strip().lower() if s.references else ""
    if gold not in ("yes", "no"):
        raise InputError(f"sample {s.id}: the yes/no metric needs the answer yes or no; got {gold!r}")
    return yes_no_scores(pred, gold)


def _mean_accuracy(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {"accuracy": mean_of("correct")(columns)}


def _yes_no_aggregate(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    return pope_metrics(columns)


#: A metric whose scoring changed, with its new name in the task's version (so no record scored the
#: old way is reused; the other metrics' configuration hashes stay): vqa@2 — fewer than 10
#: references are scored without the leave-one-out.
_METRIC_VERSIONS = {"vqa": "vqa@2"}

#: Metric name → (per-sample score, aggregate, headline, what it is).
METRICS: dict[str, tuple[Callable, Callable, str, str]] = {
    "exact": (_exact, _mean_accuracy, "accuracy", "normalised exact match against any reference"),
    "first-word": (_first_word, _mean_accuracy, "accuracy", "the reply's first word is a reference"),
    "vqa": (_vqa, _mean_accuracy, "accuracy", "VQA accuracy (min(1, matches/3); leave-one-out over 10 or more "
            "references, none with fewer: one matching reference scores 1/3, three 1.0; use exact for one)"),
    "yesno": (_yes_no, _yes_no_aggregate, "accuracy", "POPE's yes/no reading; accuracy, precision, recall, F1, "
              "yes-ratio"),
}


def generic_task(
    data: str | Sequence[Mapping[str, Any]],
    *,
    name: str | None = None,
    columns: Mapping[str, str] | str | None = None,
    metric: str = "exact",
    split: str | None = None,
    suffix: str = "",
    images_root: str | None = None,
    max_new_tokens: int = 128,
) -> Task:
    """A VQA task over ``data`` (a file, a dataset id or directory, or a list of row dicts), each row
    read through ``columns`` (role → column name, or ``"image=img,question=q"``; roles: image,
    question, answer, id, category; missing id → the row number) and scored with ``metric``
    (:data:`METRICS`: exact, first-word, vqa, yesno).

    >>> t = generic_task([{"image": Image.new("RGB", (8, 8)), "question": "Is it dark?", "answer": "yes"}],
    ...                  metric="yesno")
    >>> s = t.samples()[0]; s.id, s.references, t.headline
    ('0', ('yes',), 'accuracy')
    """
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")
    mapping = {**DEFAULT_COLUMNS, **_parse_columns(columns)}
    in_code = not isinstance(data, (str, Path))
    root = Path(images_root) if images_root else (None if in_code else _data_folder(str(data)))
    score, aggregate, headline, what = METRICS[metric]
    label = name or ("vqa" if in_code else f"vqa:{Path(str(data)).stem}")

    def rows(limit: int | None) -> Iterable[Mapping[str, Any]]:
        # a new dict per row with its number (the id of a row without one); the loaded row is untouched
        return ({**row, ROW_NUMBER: i} for i, row in enumerate(_rows(data, split, limit)))

    def to_sample(row: Mapping[str, Any]) -> EvalSample:
        return _sample(row, mapping, root, suffix)

    spec = None if in_code else {"generic": {"data": str(data), "name": name, "columns": dict(mapping),
                                             "metric": metric, "split": split, "suffix": suffix,
                                             "images_root": images_root, "max_new_tokens": max_new_tokens}}
    source = "rows given in code" if in_code else f"{data}" + (f" (split {split})" if split else "")
    def row_id(row: Mapping[str, Any]) -> str:
        ident = row.get(mapping["id"])
        return str(ident) if ident is not None else str(row[ROW_NUMBER])

    return Task(label, f"{source}; metric: {what}", rows, to_sample, score, aggregate, headline,
                max_new_tokens=max_new_tokens, spec=spec, row_id=row_id,
                version=f"generic-1:{_METRIC_VERSIONS.get(metric, metric)}:"
                        f"{json.dumps(mapping, sort_keys=True)}:{suffix}")


def _parse_columns(columns: Mapping[str, str] | str | None) -> dict[str, str]:
    if columns is None:
        return {}
    if isinstance(columns, str):
        pairs = [p.split("=", 1) for p in columns.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise InputError(f"--columns is role=column,… (e.g. image=img,question=q); got {columns!r}")
        columns = {k.strip(): v.strip() for k, v in pairs}
    unknown = sorted(set(columns) - set(DEFAULT_COLUMNS))
    if unknown:
        raise InputError(f"unknown column role(s) {', '.join(unknown)}; roles: {', '.join(DEFAULT_COLUMNS)}")
    return dict(columns)


def _data_folder(data: str) -> Path | None:
    path = Path(data)
    return path.parent if path.is_file() else None


def _rows(data: Any, split: str | None, limit: int | None) -> Iterable[Mapping[str, Any]]:
    if not isinstance(data, (str, Path)):
        return list(data)[:limit]
    path = Path(data)
    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".jsonl":
        return _jsonl_rows(path, limit)
    if path.is_file() and suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise InputError(f"{path}: a JSON data file holds a list of row objects")
        return rows[:limit]
    if path.is_file() and suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))[:limit]
    if path.is_file():
        raise InputError(f"{path}: data files are .jsonl, .json or .csv (or a Hugging Face dataset)")
    if not path.exists() and (suffix in (".jsonl", ".json", ".csv", ".parquet") or looks_local(str(data))):
        raise InputError(f"--data {data}: no such file or folder here; give a .jsonl/.json/.csv file, a "
                         "save_to_disk folder, or a hub id (owner/name)")
    return _hf_rows(str(data), split, limit)


def _jsonl_rows(path: Path, limit: int | None) -> list[dict[str, Any]]:
    """The file's rows; a line that is not UTF-8 text or not a JSON object becomes a row holding why
    (:data:`ROW_ERROR`), so that its sample fails alone and the run goes on."""
    out: list[dict[str, Any]] = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
                if not isinstance(row, dict):
                    raise ValueError(f"a {type(row).__name__}, not an object")
            except UnicodeDecodeError as e:
                row = {ROW_ERROR: f"{path}, line {number}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                  f"{e.start + 1}); save the file as UTF-8"}
            except ValueError as e:
                why = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
                row = {ROW_ERROR: f"{path}, line {number}: not a JSON object ({why})"}
            out.append(row)
            if limit is not None and len(out) >= limit:
                break
    return out


def _hf_rows(data: str, split: str | None, limit: int | None) -> Any:
    datasets = import_optional("datasets", "eval", f"{data!r}, not a .jsonl/.json/.csv file, is read as a Hugging "
                               "Face dataset, which", "the datasets package")
    try:
        if Path(data).is_dir() and any((Path(data) / f).exists() for f in SAVED):
            ds = datasets.load_from_disk(data)
        else:
            ds = datasets.load_dataset(data, split=split) if split else datasets.load_dataset(data)
    except Exception as e:  # noqa: BLE001  # a missing dataset offline, a wrong id, a wrong split …
        raise InputError(f"cannot load the dataset {data!r}{f' split {split!r}' if split else ''}: "
                         f"{type(e).__name__}: {e}; pass a local .jsonl/.csv file or a save_to_disk directory, "
                         "or run where the hub is reachable") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            raise InputError(f"{data!r} has splits {', '.join(ds)}; choose one with --split")
        ds = ds[split]
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


def _sample(row: Mapping[str, Any], mapping: Mapping[str, str], root: Path | None, suffix: str) -> EvalSample:
    if ROW_ERROR in row:
        raise InputError(row[ROW_ERROR])

    def get(role: str, required: bool = True) -> Any:
        column = mapping[role]
        if column not in row:
            if required:
                columns = ", ".join(k for k in row if k != ROW_NUMBER)
                raise InputError(f"a row has no {column!r} column for the {role}; its columns: {columns}; "
                                 f"map the {role} with --columns {role}=COLUMN")
            return None
        return row[column]

    ident = get("id", required=False)
    answers = get("answer")
    answers = [answers] if isinstance(answers, str) else list(answers or [])
    raw = get("image")
    images = tuple(_image(v, root) for v in (raw if isinstance(raw, (list, tuple)) else [raw]))
    category = get("category", required=False)
    return EvalSample(str(ident) if ident is not None else str(row[ROW_NUMBER]),
                      images, str(get("question")), tuple(str(a) for a in answers), suffix=suffix,
                      category=None if category is None else str(category))


def _image(value: Any, root: Path | None) -> Image.Image:
    from ...images import load_image

    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, Mapping) and value.get("bytes"):
        return load_image(Image.open(io.BytesIO(value["bytes"])))
    if isinstance(value, Mapping) and value.get("path"):
        value = value["path"]
    if isinstance(value, str):
        path = Path(value)
        if not path.is_absolute() and root is not None:
            path = root / path
        return load_image(path, name=str(path))
    raise InputError(f"cannot read an image from a {type(value).__name__}; give a path, a PIL image, or image bytes")
