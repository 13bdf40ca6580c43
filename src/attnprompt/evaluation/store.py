"""The run store: one SQLite file per output directory, one record per (task, sample, configuration).

A record's key is the task, the sample id and a hash of the full configuration that produced it
(models, map parameters, prompts, the task's version); so a killed run resumes where it stopped
(each batch is one transaction: a record is complete or absent), nothing is recorded twice, and a
changed setting never reuses a record made with another. SQLite comes with Python, survives
``kill -9`` mid-write, and lets anyone query a run with their own tools.

    sqlite3 runs/demo/records.sqlite "select condition, avg(ok) from records group by condition"
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import OutputError

FILENAME = "records.sqlite"

_SCHEMA = """
create table if not exists records (
    task text not null, sample_id text not null, config_hash text not null, condition text not null,
    ok integer not null, prediction text, error text, failure text, scores text, record text not null,
    seconds real not null default 0,
    primary key (task, sample_id, config_hash));
create table if not exists configs (config_hash text primary key, task text not null, condition text not null,
    config text not null);
create table if not exists images (task text not null, sample_id text not null, config_hash text not null,
    slot text not null, data blob not null, primary key (task, sample_id, config_hash, slot));
create table if not exists meta (key text primary key, value text not null);
create table if not exists judgements (task text not null, sample_id text not null, config_hash text not null,
    judge_hash text not null, ok integer not null, scores text not null, replies text not null, error text,
    attempts integer not null, primary key (task, sample_id, config_hash, judge_hash));
"""


@dataclass(frozen=True)
class Record:
    """One answered (or failed) sample under one configuration. ``scores`` is None when it failed:
    a failure is never scored. ``record`` holds the rest, JSON-able (the prompts, every step, the
    sample's question and references)."""

    task: str
    sample_id: str
    config_hash: str
    condition: str
    ok: bool
    prediction: str
    error: str | None = None
    failure: str | None = None
    scores: Mapping[str, float] | None = None
    record: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def answered(cls, key: RecordKey, prediction: str, scores: Mapping[str, float] | None,
                 record: Mapping[str, Any], seconds: float = 0.0) -> Record:
        """A sample answered under ``key`` (scores None: answered, not scored by a metric — lmms-eval's).

        >>> Record.answered(RecordKey("t", "s", "h", "plain"), "red", {"correct": 1.0}, {}).ok
        True
        """
        return cls(*key, True, prediction, scores=scores, record=record, seconds=seconds)

    @classmethod
    def failed(cls, key: RecordKey, error: str, failure: str | None = "error", record: Mapping[str, Any] | None = None,
               seconds: float = 0.0) -> Record:
        """A sample that got no answer under ``key``: why (``error``) and which kind of failure; never scored.

        >>> Record.failed(RecordKey("t", "s", "h", "plain"), "timed out").scores is None
        True
        """
        return cls(*key, False, "", error=error, failure=failure, record=dict(record or {}), seconds=seconds)


class RecordKey(NamedTuple):
    """What a record is stored under: the task, the sample, the configuration's hash, and the report's row."""

    task: str
    sample_id: str
    config_hash: str
    condition: str


class RunStore:
    """The records of one output directory (created on first use).

    >>> import tempfile
    >>> store = RunStore(tempfile.mkdtemp())
    >>> store.put([Record("t", "s1", "h", "plain", True, "red", scores={"correct": 1.0})])
    >>> store.status("t", "h")
    {'s1': True}
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.directory / FILENAME, timeout=30, check_same_thread=False)
            self.db.execute("pragma journal_mode=wal")
            self.db.execute("pragma synchronous=normal")  # WAL + normal: a killed process loses no commit
            self.db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise OutputError(f"cannot open the run store in {self.directory}: {e}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------

    def put(self, records: Sequence[Record], images: Iterable[tuple[str, str, str, str, bytes]] = ()) -> None:
        """Write ``records`` (replacing a record with the same key: a retried failure) and their
        pictures ``(task, sample_id, config_hash, slot, png)`` in one transaction."""
        rows = [(r.task, r.sample_id, r.config_hash, r.condition, int(r.ok), r.prediction, r.error, r.failure,
                 None if r.scores is None else json.dumps(dict(r.scores)), json.dumps(r.record, default=str),
                 float(r.seconds)) for r in records]
        with self.db:
            self.db.executemany("insert or replace into records values (?,?,?,?,?,?,?,?,?,?,?)", rows)
            self.db.executemany("insert or replace into images values (?,?,?,?,?)", list(images))

    def put_judgements(self, task: str, config_hash: str, judge_hash: str, items: Sequence[tuple[str, Any]]) -> None:
        """Store ``(sample_id, Judgement)`` pairs in one transaction (replacing earlier ones)."""
        rows = [(task, sample, config_hash, judge_hash, int(j.ok), json.dumps(dict(j.scores)),
                 json.dumps(list(j.replies)), j.error, j.attempts) for sample, j in items]
        with self.db:
            self.db.executemany("insert or replace into judgements values (?,?,?,?,?,?,?,?,?)", rows)

    def judgements(self, task: str, config_hash: str, judge_hash: str) -> dict[str, dict[str, Any]]:
        """``{sample id: {"ok", "scores", "replies", "error", "attempts"}}`` of one judge's verdicts."""
        rows = self.db.execute("select sample_id, ok, scores, replies, error, attempts from judgements where task = ? "
                               "and config_hash = ? and judge_hash = ?", (task, config_hash, judge_hash))
        return {s: {"ok": bool(ok), "scores": json.loads(sc), "replies": json.loads(rp), "error": err,
                    "attempts": att} for s, ok, sc, rp, err, att in rows}

    def put_config(self, config_hash: str, task: str, condition: str, config: Mapping[str, Any]) -> None:
        with self.db:
            self.db.execute("insert or replace into configs values (?,?,?,?)",
                            (config_hash, task, condition, json.dumps(config, sort_keys=True, default=str)))

    def set_meta(self, key: str, value: Any) -> None:
        with self.db:
            self.db.execute("insert or replace into meta values (?,?)", (key, json.dumps(value, default=str)))

    # -- reading ---------------------------------------------------------------------------------

    def meta(self, key: str) -> Any:
        row = self.db.execute("select value from meta where key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def status(self, task: str, config_hash: str) -> dict[str, bool]:
        """``{sample id: ok}`` of the records of ``task`` made with ``config_hash``."""
        rows = self.db.execute("select sample_id, ok from records where task = ? and config_hash = ?",
                               (task, config_hash))
        return {sample: bool(ok) for sample, ok in rows}

    def records(self, task: str, config_hash: str) -> dict[str, Record]:
        """``{sample id: Record}`` for ``task`` made with ``config_hash``."""
        rows = self.db.execute("select * from records where task = ? and config_hash = ?", (task, config_hash))
        out = {}
        for (t, sample, h, condition, ok, prediction, error, failure, scores, record, seconds) in rows:
            out[sample] = Record(t, sample, h, condition, bool(ok), prediction or "", error=error, failure=failure,
                                 scores=None if scores is None else json.loads(scores), record=json.loads(record),
                                 seconds=seconds)
        return out

    def config(self, config_hash: str) -> dict[str, Any] | None:
        row = self.db.execute("select config from configs where config_hash = ?", (config_hash,)).fetchone()
        return None if row is None else json.loads(row[0])

    def images(self, task: str, sample_id: str, config_hash: str) -> dict[str, bytes]:
        """``{slot: png bytes}`` kept for one record (``config_hash`` "" for the sample's own image)."""
        rows = self.db.execute("select slot, data from images where task = ? and sample_id = ? and config_hash = ?",
                               (task, sample_id, config_hash))
        return dict(rows)

    def count(self) -> int:
        """How many records the store holds (every task and configuration)."""
        return int(self.db.execute("select count(*) from records").fetchone()[0])
