"""Where a benchmark's rows come from: a Hugging Face hub id (through ``datasets``), a local
``save_to_disk`` folder, local parquet files, or — for benchmarks distributed that way — the original
release's JSON and image folder (a task passes a reader for it). Rows come back in the layout the
hub copy has (lmms-eval's), whichever way they were found, so one row → sample function serves all.

With no network and no local copy, the error is one line that says what to pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import InputError, import_optional

#: Files ``save_to_disk`` writes: a folder holding one of them is a saved dataset.
SAVED = ("dataset_info.json", "state.json", "dataset_dict.json")


def _datasets() -> Any:
    return import_optional("datasets", "eval", "reading benchmark data", "the datasets package")


def load_rows(
    task: str,
    data: str | None,
    *,
    hub_id: str,
    split: str,
    config: str | None = None,
    original: Callable[[Path], Sequence[Mapping[str, Any]] | None] | None = None,
    limit: int | None = None,
) -> Sequence[Mapping[str, Any]]:
    """The rows of ``task``'s ``split`` (the first ``limit``): from ``data`` when given, else from the
    hub (``hub_id``, ``config``). ``original(folder)`` reads the original release's layout, returning
    None when the folder is not one.

    >>> load_rows("mme", "/no/such/folder", hub_id="lmms-lab/MME", split="test")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    attnprompt.errors.InputError: mme: /no/such/folder does not exist; ...
    """
    where = f"--data {task}=PATH: a save_to_disk folder, parquet files" + (
        ", or the original release's folder" if original else "")
    if data is None or not looks_local(data):
        source = data or hub_id
        datasets = _datasets()
        try:
            ds = datasets.load_dataset(source, config, split=split) if config else datasets.load_dataset(
                source, split=split)
        except Exception as e:  # noqa: BLE001  # offline, a wrong id or split: one line saying what to pass
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(f"{task}: cannot load {source!r} split {split!r} from the hub ({reason[:200]}); give "
                             f"{where}") from None
        return _first(ds, limit)
    path = Path(data)
    if not path.exists():
        raise InputError(f"{task}: {data} does not exist; give {where}")
    if path.is_dir() and any((path / f).exists() for f in SAVED):
        datasets = _datasets()
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise InputError(f"{task}: {data} has splits {', '.join(ds)}, not {split!r}")
            ds = ds[split]
        return _first(ds, limit)
    parquet = sorted(path.rglob("*.parquet")) if path.is_dir() else ([path] if path.suffix == ".parquet" else [])
    if parquet:
        chosen = [p for p in parquet if p.name.startswith(split) or p.parent.name == split] or parquet
        ds = _datasets().load_dataset("parquet", data_files=[str(p) for p in chosen], split="train")
        return _first(ds, limit)
    if original is not None and path.is_dir():
        rows = original(path)
        if rows is not None:
            return list(rows)[:limit]
    raise InputError(f"{task}: {data} is neither a save_to_disk folder nor parquet files"
                     + (" nor the original release's layout" if original else "") + f"; give {where}")


def benchmark_task(name: str, title: str, data: str | None, *, hub_id: str, split: str,
                   original: Callable[[Path], Sequence[Mapping[str, Any]] | None] | None = None,
                   config: str | None = None, read: Callable[[int | None], Any] | None = None,
                   **task: Any) -> Any:
    """A benchmark's :class:`~attnprompt.evaluation.tasks.base.Task` reading its rows with :func:`load_rows`
    from ``data`` (default the hub copy ``hub_id``, its ``config``), or with ``read(limit)`` for a benchmark
    whose rows come from several parts (GQA's questions and images); ``task`` holds the rest of the Task's
    fields (``to_sample``, ``score``, ``aggregate``, ``headline`` …). Its source names the title, where the
    data is and the split, and says when a judge scores it.

    >>> t = benchmark_task("tiny", "Tiny", "/d/tiny", hub_id="org/tiny", split="test", to_sample=None,
    ...                    score=None, aggregate=None, headline="accuracy")
    >>> t.source, t.data
    ('Tiny (/d/tiny, test)', '/d/tiny')
    """
    from .base import Task

    def rows(limit: int | None) -> Any:
        if read is not None:
            return read(limit)
        return load_rows(name, data, hub_id=hub_id, split=split, config=config, original=original, limit=limit)

    judge = task.get("judge")
    judged = "" if judge is None else ("; GPT-judged with --judge" if judge.optional else "; GPT-judged")
    return Task(name, f"{title} ({data or hub_id}, {split}){judged}", rows, data=data or hub_id, **task)


def looks_local(data: str) -> bool:
    """Whether ``data`` names a local path rather than a hub id (``owner/name``).

    >>> looks_local("lmms-lab/MME"), looks_local("./mme"), looks_local("data/mme/test")
    (False, True, True)
    """
    # a hub id is "owner/name"; anything that exists here, or is written as a path, is local
    return Path(data).exists() or data.startswith((".", "/", "~")) or data.count("/") != 1


def _first(ds: Any, limit: int | None) -> Any:
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds
