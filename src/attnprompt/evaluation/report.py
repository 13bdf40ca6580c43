"""The report of an evaluation directory: ``report.md``, ``report.json``, ``report.html``,
``samples.jsonl``, ``deltas.svg`` and ``cost.md``, built from the run store alone (``attnprompt report DIR``).

Table 1's layout: one row per strategy (with its map), one column per task's headline metric, each
cell the value, its difference from ``plain`` with a 95 % interval from a paired bootstrap over the
samples both answered, n, and failures. Then per task: every metric, per-category tables, the
failures, a plot of the differences, and — in the HTML — a gallery of samples where the strategies
disagree, with what each showed the VLM. ``samples.jsonl`` holds one line per record so anyone can
score a run again with their own code. Everything is a pure function of the stored records (and a
seeded bootstrap): the same records give the same report, byte for byte.

Cost beside accuracy: each condition's VLM calls per question (a step is one request unless its detail
says ``calls``: a search's probes) are in the tables; its seconds per question (wall clock per sample,
amortised over its batch, maps included) are in ``cost.md`` alone, since they differ from run to run and
the other files do not.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..files import atomic_write_all
from .metrics import bootstrap, paired_bootstrap
from .store import FILENAME, Record, RunStore
from .tasks import Task, get_task
from .tasks.base import score_columns

#: The condition every other is compared with, when the run has it.
BASELINE = "plain"
#: Gallery entries per task in the HTML report.
GALLERY_SIZE = 24
RESAMPLES = 1000


def write_report(directory: str | Path, *, tasks: Sequence[Task] | None = None, store: RunStore | None = None,
                 resamples: int = RESAMPLES) -> list[Path]:
    """Build every report file of ``directory`` from its run store; returns the paths written.

    Tasks are found again from the run's record of them (a name or a file); pass ``tasks`` for tasks
    built in code.
    """
    directory = Path(directory)
    own = store is None
    if store is None:
        if not (directory / FILENAME).exists():
            raise InputError(f"{directory} holds no evaluation (no {FILENAME}); run attnprompt eval --out "
                             f"{directory} first")
        store = RunStore(directory)
    try:
        plan = store.meta("plan")
        if plan is None:
            raise InputError(f"{directory} holds no finished evaluation yet (the run was interrupted before its "
                             "end); rerun the same attnprompt eval command to resume and finish it")
        given = {t.name: t for t in tasks or ()}
        data = build(plan, given, store, resamples)
        svg = deltas_svg(data)
        files: list[tuple[Path, Callable[[Any], None], bool]] = [
            (directory / "report.md", _writer(markdown(data)), False),
            (directory / "cost.md", _writer(cost_markdown(data)), False),
            (directory / "report.json", _writer(json.dumps(_public(data), indent=2, ensure_ascii=False) + "\n"),
             False),
            (directory / "report.html", _writer(html_report(data, store, svg)), False),
            (directory / "samples.jsonl", _writer(samples_jsonl(data, store)), False),
            (directory / "deltas.svg", _writer(svg), False),
        ]
        return atomic_write_all(files)
    finally:
        if own:
            store.close()


def _writer(text: str) -> Callable[[Any], None]:
    return lambda f: f.write(text)


def _resolve(entry: Mapping[str, Any], given: Mapping[str, Task]) -> Task:
    if entry["name"] in given:
        return given[entry["name"]]
    if entry.get("spec") is None:
        raise InputError(f"task {entry['name']!r} was built in code; pass it to write_report(..., tasks=[...])")
    return get_task(entry["spec"])


# -- numbers ------------------------------------------------------------------------------------------


def build(plan: Mapping[str, Any], given: Mapping[str, Task], store: RunStore, resamples: int = RESAMPLES) -> dict:
    """Every number of the report, JSON-able (private ``_``-keys hold the records for the renderers)."""
    out: dict[str, Any] = {"backend": plan.get("backend"), "settings": plan.get("settings", {}), "tasks": [],
                           "configs": {}}
    for entry in plan["tasks"]:
        task = _resolve(entry, given)
        ids = entry["samples"]
        conditions = []
        judge = entry.get("judge")
        for c in entry["conditions"]:
            records = store.records(task.name, c["config_hash"])
            out["configs"][c["config_hash"]] = store.config(c["config_hash"])
            if task.judge is not None and (judge or not task.judge.optional):  # optional: scored without one
                verdicts = store.judgements(task.name, c["config_hash"], judge["hash"]) if judge else {}
                records = _with_verdicts(records, verdicts)
            conditions.append({"label": c["label"], "config_hash": c["config_hash"],
                               "_records": {i: records[i] for i in ids if i in records}})
        numbers = _task_numbers(task, ids, conditions, resamples)
        numbers["judge"] = None if task.judge is None else (judge["describe"] if judge else "none given")
        out["tasks"].append(numbers)
    return out


#: The failure of an answer the judge gave no reply on (unscored; the next run asks again).
NO_REPLY = "no reply from the judge"


def _with_verdicts(records: Mapping[str, Record], verdicts: Mapping[str, Mapping[str, Any]]) -> dict[str, Record]:
    """Answers with their judge's scores merged in; an answer the judge has not scored has none
    (``scores`` None: it awaits the judge and is not counted); one the judge gave no reply on has none
    either, and the failure :data:`NO_REPLY` (counted and listed; the next run asks again)."""
    from dataclasses import replace

    out = {}
    for sid, r in records.items():
        if r.ok and sid in verdicts and not verdicts[sid]["ok"]:
            v = verdicts[sid]
            r = replace(r, scores=None, failure=NO_REPLY,
                        record={**r.record, "judge": {"replies": v["replies"], "error": v["error"]}})
        elif r.ok and sid in verdicts:
            v = verdicts[sid]
            r = replace(r, scores={**(r.scores or {}), **v["scores"]},
                        record={**r.record, "judge": {"replies": v["replies"], "error": v["error"]}})
        elif r.ok:
            r = replace(r, scores=None)
        out[sid] = r
    return out


def _headline(task: Task) -> Callable[[Mapping[str, np.ndarray]], float]:
    def value(columns: Mapping[str, np.ndarray]) -> float:
        return float(task.aggregate(columns).get(task.headline, float("nan")))

    return value


def _columns(records: Sequence[Record]) -> dict[str, np.ndarray]:
    return score_columns([r.scores or {} for r in records])


def _task_numbers(task: Task, ids: list[str], conditions: list[dict], resamples: int) -> dict[str, Any]:
    headline = _headline(task)
    labels = [c["label"] for c in conditions]
    baseline = next((c for c in conditions if c["label"] == BASELINE), None) if task.kind == "answer" else None
    categories = sorted({cat for c in conditions for r in c["_records"].values()
                         for cat in r.record.get("sample", {}).get("categories", [])})
    for c in conditions:
        records = c["_records"] = _whole_groups(task, ids, c["_records"])
        ok = [records[i] for i in ids if i in records and _scored(records[i])]
        failed = [records[i] for i in ids if i in records and not records[i].ok]
        c.update(n=len(ok), failures=len(failed), missing=sum(i not in records for i in ids),
                 partial=sum(1 for r in records.values() if r.failure == PARTIAL),
                 judge_errors=sum(1 for r in records.values() if r.failure == NO_REPLY),
                 unjudged=sum(i in records and records[i].ok and records[i].scores is None
                              and records[i].failure not in (PARTIAL, NO_REPLY) for i in ids),
                 judge_failures=int(sum((r.scores or {}).get("judge_failed", 0) for r in ok)))
        c["errors"] = sorted({r.error or "" for r in failed})[:3]
        c["crops"] = crop_stats(ok)
        c["cost"] = cost_stats([records[i] for i in ids if i in records])
        c["judge_error_texts"] = sorted({(r.record.get("judge") or {}).get("error") or "" for r in records.values()
                                         if r.failure == NO_REPLY})[:3]
        c["metrics"] = dict(task.aggregate(_columns(ok))) if ok else {}
        c["value"] = c["metrics"].get(task.headline, float("nan"))
        columns = _columns(ok)
        clusters = task.cluster if task.cluster in columns else None
        c["interval"] = list(bootstrap(columns, headline, resamples=resamples, clusters=clusters)[1:]) if ok else None
        c["delta"] = None
        if baseline is not None and c is not baseline:
            c["delta"] = _delta(ids, records, baseline["_records"], headline, resamples, task.cluster)
        c["categories"] = {}
        for cat in categories:
            in_cat = [i for i in ids if i in records and cat in records[i].record["sample"].get("categories", [])]
            ok_cat = [records[i] for i in in_cat if _scored(records[i])]
            entry: dict[str, Any] = {"n": len(ok_cat), "value": headline(_columns(ok_cat)) if ok_cat else float("nan")}
            if baseline is not None and c is not baseline:
                entry["delta"] = _delta(in_cat, records, baseline["_records"], headline, resamples, task.cluster)
            c["categories"][cat] = entry
    return {"name": task.name, "source": task.source, "kind": task.kind, "headline": task.headline,
            "correct": task.correct, "notes": _notes(task, labels), "samples": len(ids), "_ids": ids,
            "baseline": BASELINE if baseline is not None else None, "labels": labels, "categories": categories,
            "conditions": conditions}


def _notes(task: Any, labels: Sequence[str]) -> str:
    """The task's notes, with each row note only where its row is in the report (a note on zoom-oracle
    explains nothing in a report without it)."""
    shown = [note for strategy, note in dict(task.row_notes).items()
             if any(label == strategy or label.startswith(f"{strategy} (") for label in labels)]
    return " ".join(part for part in (task.notes, *shown) if part)


def step_calls(step: Mapping[str, Any]) -> int:
    """The VLM requests a recorded step stands for: its detail's ``calls`` (a search's probes), else one.

    >>> step_calls({"detail": {"calls": 17}}), step_calls({"detail": {}})
    (17, 1)
    """
    calls = (step.get("detail") or {}).get("calls")
    return int(calls) if isinstance(calls, (int, float)) and not isinstance(calls, bool) else 1


def cost_stats(records: Sequence[Record]) -> dict[str, Any] | None:
    """What a condition cost per question, over its records (failed ones too: they cost as much): the mean
    VLM calls (:func:`step_calls` summed over a record's steps; None on map tasks, which ask nothing), and the
    mean seconds (wall clock per sample, amortised over its batch; private, ``_seconds``: only ``cost.md``
    shows it, the other files stay the same from run to run). ``None`` without records.

    >>> r = Record("t", "s", "h", "c", True, "red", record={"steps": [{"detail": {"calls": 9}}, {}]}, seconds=0.5)
    >>> cost_stats([r, r])
    {'n': 2, 'calls': 10.0, '_seconds': 0.5}
    """
    if not records:
        return None
    answered = [r for r in records if "steps" in r.record]
    calls = float(np.mean([sum(step_calls(s) for s in r.record["steps"]) for r in answered])) if answered else None
    return {"n": len(records), "calls": calls, "_seconds": float(np.mean([r.seconds for r in records]))}


def shown_box(step: Mapping[str, Any]) -> list[int] | None:
    """The box of the first image a recorded step cropped and showed: its first annotation's (a map's crop),
    else its detail's ``box`` (a reference or searched crop); None when it showed the image whole.

    >>> shown_box({"annotations": [{"box": None}], "detail": {"box": [0, 0, 5, 5]}}), shown_box({})
    ([0, 0, 5, 5], None)
    """
    boxes = [a.get("box") for a in step.get("annotations", []) if a.get("box")]
    if boxes:
        return list(boxes[0])
    box = (step.get("detail") or {}).get("box")
    return list(box) if box else None


def crop_stats(records: Sequence[Record]) -> dict[str, Any] | None:
    """How large the crops a condition showed were: the mean share of the image the crop box covers, and
    — on tasks whose samples say where the answer lies (``meta["box"]``, shapes-detail) — how often the box
    holds that object whole. The box is the last step's (:func:`shown_box`: a map's crop, a searched or a
    reference one). ``None`` for a condition that cropped nothing.

    >>> r = Record("t", "s", "h", "c", True, "red", scores={"correct": 1.0}, record={"sample": {"images": [[100, 100]],
    ...     "meta": {"box": [10, 10, 20, 20]}}, "steps": [{"annotations": [{"box": [0, 0, 50, 50]}]}]})
    >>> crop_stats([r])
    {'n': 1, 'box_share': 0.25, 'holds_object': 1.0}
    """
    shares, holds = [], []
    for r in records:
        sample = r.record.get("sample", {})
        steps = r.record.get("steps", [])
        boxes = [b for b in (shown_box(s) for s in steps[-1:]) if b]
        if not boxes or not sample.get("images"):
            continue
        (x0, y0, x1, y1), (w, h) = boxes[0], sample["images"][0]
        shares.append((x1 - x0) * (y1 - y0) / float(w * h))
        target = sample.get("meta", {}).get("box")
        if target:
            holds.append(float(x0 <= target[0] and y0 <= target[1] and target[2] <= x1 and target[3] <= y1))
    if not shares:
        return None
    out: dict[str, Any] = {"n": len(shares), "box_share": float(np.mean(shares))}
    if holds:
        out["holds_object"] = float(np.mean(holds))
    return out
#: The failure a record gets when another sample of its group failed (it is kept, unscored).
PARTIAL = "partial group"


def _whole_groups(task: Task, ids: Sequence[str], records: Mapping[str, Record]) -> dict[str, Record]:
    """The records with every sample of a group that holds a failure made unscored (``scores`` None,
    ``failure`` :data:`PARTIAL`): a task whose original scores a group only whole (MME's image) is
    never partly scored."""
    from dataclasses import replace

    if task.group_of is None:
        return dict(records)
    broken = {task.group_of(i) for i in ids if i in records and not records[i].ok}
    return {i: replace(r, scores=None, failure=PARTIAL) if r.ok and task.group_of(i) in broken else r
            for i, r in records.items()}


def _scored(r: Record) -> bool:
    return r.ok and r.scores is not None


def _delta(ids: Sequence[str], treated: Mapping[str, Record], base: Mapping[str, Record],
           headline: Callable, resamples: int, cluster: str | None = None) -> dict[str, Any] | None:
    both = [i for i in ids if i in treated and i in base and _scored(treated[i]) and _scored(base[i])]
    if not both:
        return None
    columns = _columns([treated[i] for i in both])
    est, low, high = paired_bootstrap(columns, _columns([base[i] for i in both]), headline, resamples=resamples,
                                      clusters=cluster if cluster in columns else None)
    return {"value": est, "low": low, "high": high, "n": len(both)}


def _public(data: Mapping[str, Any]) -> Any:
    """The report's numbers without the private record lists (what report.json holds)."""
    if isinstance(data, Mapping):
        return {k: _public(v) for k, v in data.items() if not str(k).startswith("_")}
    if isinstance(data, list):
        return [_public(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


# -- text ---------------------------------------------------------------------------------------------


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _signed(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:+.3f}".replace("-", "−")


def _delta_text(delta: Mapping[str, Any] | None) -> str:
    if not delta:
        return ""
    return f"Δ {_signed(delta['value'])} [{_signed(delta['low'])}, {_signed(delta['high'])}]"


def _cell(c: Mapping[str, Any]) -> str:
    parts = [_num(c["value"])]
    if c.get("delta"):
        parts.append(_delta_text(c["delta"]))
    parts.append(f"n {c['n']}")
    if c["failures"]:
        parts.append(f"{c['failures']} failed")
    if c["missing"]:
        parts.append(f"{c['missing']} missing")
    if c.get("partial"):
        parts.append(f"{c['partial']} unscored with a failed partner")
    if c.get("judge_errors"):
        parts.append(f"{c['judge_errors']} judge failures (no reply; unscored, the next run asks again)")
    if c.get("judge_failures"):
        parts.append(f"{c['judge_failures']} unreadable verdicts (scored as the original does)")
    if c.get("unjudged"):
        parts.append(f"{c['unjudged']} await a judge")
    return " · ".join(parts)


def main_table(data: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Table 1's layout for the answer tasks: header and rows of cell texts."""
    tasks = [t for t in data["tasks"] if t["kind"] == "answer"]
    labels: list[str] = []
    for t in tasks:
        labels += [lab for lab in t["labels"] if lab not in labels]
    header = ["strategy (map)"] + [f"{t['name']} {t['headline']}" for t in tasks]
    rows = []
    for label in labels:
        row = [label]
        for t in tasks:
            c = next((c for c in t["conditions"] if c["label"] == label), None)
            row.append("" if c is None else _cell(c))
        rows.append(row)
    return header, rows


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align_first: bool = True) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _metric_rows(t: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    names: list[str] = []
    for c in t["conditions"]:
        names += [k for k in c["metrics"] if k not in names]
    calls = t["kind"] == "answer"
    header = ["condition", *names, f"{t['headline']} 95 % interval", "n", "failed"] + (["VLM calls / q"] * calls)
    rows = []
    for c in t["conditions"]:
        interval = "–" if not c["interval"] else f"[{_num(c['interval'][0])}, {_num(c['interval'][1])}]"
        cost = [_num((c.get("cost") or {}).get("calls"), 2)] if calls else []
        rows.append([c["label"], *[_num(c["metrics"].get(k)) for k in names], interval, str(c["n"]),
                     str(c["failures"]), *cost])
    return header, rows


def cost_markdown(data: Mapping[str, Any]) -> str:
    """``cost.md``: per task and condition, the headline beside the VLM calls and seconds per question (the one
    file whose numbers change from run to run: wall clock)."""
    lines = ["# Cost per question", "",
             "VLM calls: requests to the answering VLM per question (a search's probes counted one by one); seconds: "
             "wall clock per question, amortised over its batch, maps included. Timings differ between runs and "
             "machines; compare conditions of one run.", ""]
    for t in data["tasks"]:
        rows = []
        for c in t["conditions"]:
            cost = c.get("cost") or {}
            rows.append([c["label"], _num(c["value"]), _num(cost.get("calls"), 2), _num(cost.get("_seconds"), 3),
                         str(cost.get("n", 0))])
        lines += [f"## {t['name']}", ""]
        lines += _md_table(["condition", t["headline"], "VLM calls / q", "seconds / q", "records"], rows) + [""]
    return "\n".join(lines)


def _category_rows(t: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["condition", *t["categories"]]
    rows = []
    for c in t["conditions"]:
        cells = []
        for cat in t["categories"]:
            e = c["categories"][cat]
            text = f"{_num(e['value'])} (n {e['n']})"
            if e.get("delta"):
                text += " " + _delta_text(e["delta"])
            cells.append(text)
        rows.append([c["label"], *cells])
    return header, rows


def markdown(data: Mapping[str, Any]) -> str:
    """``report.md``."""
    lines = ["# Evaluation report", ""]
    backend = data.get("backend")
    if backend:
        lines.append("Answering VLM: " + ", ".join(f"{k} `{v}`" for k, v in backend.items()) + ".")
    settings = {k: v for k, v in data.get("settings", {}).items() if v is not None}
    lines += ["Run settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()) + ".", ""]
    header, rows = main_table(data)
    if rows:
        lines += ["## Results", "",
                  f"Headline metric per task; Δ: difference from `{BASELINE}` over the samples both answered, with "
                  "a 95 % paired-bootstrap interval; n: samples scored; failed: no answer (never scored).", ""]
        lines += _md_table(header, rows) + ["", "![differences from plain](deltas.svg)", ""]
    for t in data["tasks"]:
        lines += [f"## {t['name']}", "", f"{t['source']}. {t['samples']} samples; headline: {t['headline']}.", ""]
        if t["notes"]:
            lines += [t["notes"], ""]
        lines += _md_table(*_metric_rows(t)) + [""]
        if t["kind"] == "answer":
            lines += ["Seconds per question (wall clock, differs between runs): `cost.md`.", ""]
        if t["categories"]:
            lines += [f"{t['headline']} per category:", ""] + _md_table(*_category_rows(t)) + [""]
        cropped = [c for c in t["conditions"] if c.get("crops")]
        if cropped:
            lines += ["Crops (the last answer's first image: a map's, a searched or a reference crop): mean share of "
                      "the image the crop box covers, and how often it holds the named object whole where the task "
                      "knows it:", ""]
            lines += _md_table(["condition", "n", "box share", "holds the object"],
                               [[c["label"], str(c["crops"]["n"]), f"{c['crops']['box_share']:.3f}",
                                 f"{c['crops']['holds_object']:.3f}" if "holds_object" in c["crops"] else "–"]
                                for c in cropped]) + [""]
        for c in t["conditions"]:
            for error in c["errors"]:
                lines.append(f"- {c['label']} failed: {error}")
            for error in c.get("judge_error_texts", []):
                lines.append(f"- {c['label']} judge failed (unscored): {error}")
        if any(c["errors"] or c.get("judge_error_texts") for c in t["conditions"]):
            lines.append("")
    lines += ["## Configuration", "", "Each condition's full configuration (its hash keys its records in "
              f"`{FILENAME}`):", ""]
    for t in data["tasks"]:
        for c in t["conditions"]:
            lines += [f"<details><summary>{t['name']} · {c['label']} · {c['config_hash']}</summary>", "",
                      "```json", json.dumps(data["configs"].get(c["config_hash"]), indent=1, sort_keys=True), "```",
                      "", "</details>", ""]
    return "\n".join(lines)


def samples_jsonl(data: Mapping[str, Any], store: RunStore) -> str:
    """``samples.jsonl``: one line per record, in task, condition and sample order."""
    lines = []
    for t in data["tasks"]:
        for c in t["conditions"]:
            for sample_id in t["_ids"]:
                r = c["_records"].get(sample_id)
                if r is None:
                    continue
                sample = r.record.get("sample", {})
                lines.append(json.dumps({
                    "task": t["name"], "sample_id": sample_id, "strategy": c["label"], "config_hash": c["config_hash"],
                    "question": sample.get("question"), "prompts": r.record.get("prompts", []),
                    "prediction": r.prediction, "ok": r.ok, "error": r.error, "failure": r.failure,
                    "references": sample.get("references", []), "categories": sample.get("categories", []),
                    "scores": r.scores,
                }, ensure_ascii=False))
    return "\n".join(lines) + ("\n" if lines else "")


# -- the plot -------------------------------------------------------------------------------------------


def deltas_svg(data: Mapping[str, Any]) -> str:
    """Each strategy's difference from plain, per task, with its 95 % interval (an SVG picture)."""
    panels = []
    for t in data["tasks"]:
        rows = [(c["label"], c["delta"]) for c in t["conditions"] if c.get("delta")]
        if rows:
            panels.append((f"{t['name']} {t['headline']}", rows))
    width, left, right, row_h, head = 720, 230, 30, 24, 26
    height = max(60, sum(head + row_h * len(rows) + 16 for _, rows in panels) + 30)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>']
    if not panels:
        parts.append(f'<text x="10" y="30">No difference from {BASELINE} to show (the run has no '
                     f'{BASELINE} condition).</text></svg>')
        return "\n".join(parts) + "\n"
    y = 10
    for title, rows in panels:
        span = max(max(abs(d["low"]), abs(d["high"]), abs(d["value"])) for _, d in rows if math.isfinite(d["low"]))
        span = span if span > 0 else 0.01
        x0, x1 = left, width - right

        def x(v: float, x0: int = x0, x1: int = x1, span: float = span) -> float:
            return x0 + (v + span) / (2 * span) * (x1 - x0)

        parts.append(f'<text x="10" y="{y + 16}" font-weight="bold">{html.escape(title)}: difference from '
                     f'{BASELINE}, 95 % paired-bootstrap interval</text>')
        top = y + head
        bottom = top + row_h * len(rows)
        parts.append(f'<line x1="{x(0):.1f}" y1="{top}" x2="{x(0):.1f}" y2="{bottom}" stroke="#888" '
                     'stroke-dasharray="3,3"/>')
        for k, tick in enumerate((-span, 0.0, span)):
            anchor = ("start", "middle", "end")[k]
            parts.append(f'<text x="{x(tick):.1f}" y="{bottom + 12}" text-anchor="{anchor}" fill="#555">'
                         f'{_signed(tick)}</text>')
        for j, (label, d) in enumerate(rows):
            cy = top + row_h * j + row_h / 2
            colour = "#1a7f37" if d["low"] > 0 else ("#cf222e" if d["high"] < 0 else "#555")
            parts.append(f'<text x="{left - 8}" y="{cy + 4:.1f}" text-anchor="end">{html.escape(label)}</text>')
            if math.isfinite(d["low"]):
                parts.append(f'<line x1="{x(d["low"]):.1f}" y1="{cy:.1f}" x2="{x(d["high"]):.1f}" y2="{cy:.1f}" '
                             f'stroke="{colour}" stroke-width="2"/>')
            parts.append(f'<circle cx="{x(d["value"]):.1f}" cy="{cy:.1f}" r="4" fill="{colour}"/>')
        y = bottom + 16 + 14
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# -- HTML -----------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #1f2328; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
.gallery { display: flex; flex-direction: column; gap: 1em; }
.item { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.6em; }
.shows { display: flex; flex-wrap: wrap; gap: 0.8em; }
.shows figure { margin: 0; max-width: 280px; }
.shows img { max-width: 256px; display: block; border: 1px solid #ddd; }
.right { color: #1a7f37; font-weight: bold; } .wrong { color: #cf222e; font-weight: bold; }
.failed { color: #9a6700; font-weight: bold; }
pre { background: #f6f8fa; padding: 0.5em; overflow-x: auto; font-size: 12px; }
"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(data: bytes | None, alt: str) -> str:
    if not data:
        return f"<em>({html.escape(alt)}: not kept)</em>"
    return f'<img alt="{html.escape(alt)}" src="data:image/jpeg;base64,{base64.b64encode(data).decode()}">'


def with_boxes(data: bytes | None, size: Sequence[int] | None,
               boxes: Sequence[tuple[Sequence[int], str]]) -> bytes | None:
    """A kept picture (JPEG bytes) with ``boxes`` drawn on it: (x0, y0, x1, y1) in the pixels of the image of
    ``size`` (W, H) it was kept from, and a colour — where the answer lies and where each crop was.

    >>> import io
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("RGB", (50, 50)).save(buf, "JPEG")
    >>> out = Image.open(io.BytesIO(with_boxes(buf.getvalue(), (100, 100), [((0, 0, 50, 50), "lime")])))
    >>> out.convert("RGB").getpixel((12, 0))[1] > 200
    True
    """
    if not data or not size or not boxes:
        return data
    import io

    from PIL import Image, ImageDraw

    picture = Image.open(io.BytesIO(data)).convert("RGB")
    scale = picture.size[0] / float(size[0])
    draw = ImageDraw.Draw(picture)
    for box, colour in boxes:
        x0, y0, x1, y1 = (v * scale for v in box)
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=colour, width=max(1, round(2 * scale)))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=90)
    return out.getvalue()


def with_search(data: bytes | None, size: Sequence[int] | None, search: Mapping[str, Any]) -> bytes | None:
    """A kept picture (JPEG bytes) of the image of ``size`` (W, H) with a search path drawn on it (a step's
    ``detail["search"]``, :meth:`attnprompt.search.SearchResult.to_detail`): every visited node grey and
    numbered in visit order, the path from the root to the chosen node orange, the window shown for it red.

    >>> import io
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("RGB", (64, 64)).save(buf, "JPEG")
    >>> search = {"nodes": [{"id": 0, "box": [0, 0, 128, 128], "visit": 1}, {"id": 4, "box": [64, 64, 128, 128],
    ...           "visit": 2}], "path": [0, 4], "chosen": 4, "view": [64, 64, 128, 128]}
    >>> out = Image.open(io.BytesIO(with_search(buf.getvalue(), (128, 128), search))).convert("RGB")
    >>> out.getpixel((40, 63))[0] > 150, out.getpixel((10, 10))[0] < 60
    (True, True)
    """
    if not data or not size or not search:
        return data
    import io

    from PIL import Image

    from ..render import draw_search

    picture = Image.open(io.BytesIO(data))
    out = io.BytesIO()
    draw_search(picture, search, scale=picture.size[0] / float(size[0])).save(out, "JPEG", quality=90)
    return out.getvalue()


def _search_of(record: Record) -> Mapping[str, Any] | None:
    return next(((s.get("detail") or {}).get("search") for s in reversed(record.record.get("steps", []))
                 if (s.get("detail") or {}).get("search")), None)


def _gallery(t: Mapping[str, Any], store: RunStore) -> str:
    """Samples where the conditions disagree (answer tasks), or the first samples (map tasks), with
    what each condition showed and said — only for samples whose pictures were kept."""
    picked = []
    for sample_id in t["_ids"]:
        per = [c["_records"].get(sample_id) for c in t["conditions"]]
        if any(r is None for r in per):
            continue
        if t["kind"] == "answer":
            outcomes = {(r.ok, None if not r.ok else (r.scores or {}).get(t["correct"])) for r in per}
            if len(outcomes) < 2:
                continue
        if not store.images(t["name"], sample_id, ""):
            continue  # beyond the pictures kept (--gallery)
        picked.append((sample_id, per))
        if len(picked) >= (GALLERY_SIZE if t["kind"] == "answer" else 8):
            break
    if not picked:
        return "<p>No sample to show (no disagreement among the samples whose pictures were kept).</p>"
    items = []
    for sample_id, per in picked:
        sample = per[0].record.get("sample", {})
        originals = store.images(t["name"], sample_id, "")
        # on the first image: where the answer lies (green, when the task knows it) and each crop's box (orange)
        boxes = [(sample["meta"]["box"], "lime")] if sample.get("meta", {}).get("box") else []
        boxes += [(b, "orange") for r in per for b in (shown_box(s) for s in r.record.get("steps", [])[-1:]) if b]
        size = (sample.get("images") or [None])[0]
        caption = "original" + (" (green: the answer's object; orange: the crops)" if boxes else "")
        pictures = [originals.get(f"original{i}") for i in range(len(originals))]
        if pictures:
            pictures[0] = with_boxes(pictures[0], size, boxes)
        figs = [f"<figure>{_img(p, 'original')}<figcaption>{caption if i == 0 else 'original'}</figcaption></figure>"
                for i, p in enumerate(pictures)]
        for c, r in zip(t["conditions"], per):
            shown = store.images(t["name"], sample_id, c["config_hash"])
            pics = "".join(_img(shown[k], c["label"]) for k in sorted(shown))
            search = _search_of(r)
            if search and originals.get("original0"):  # where the search went: visits numbered, the path, the window
                pics = _img(with_search(originals["original0"], size, search), f"{c['label']} search path") + pics
            if not r.ok:
                verdict = f'<span class="failed">failed</span>: {html.escape(r.error or "")}'
            else:
                score = (r.scores or {}).get(t["correct"])
                css = "right" if score is not None and score >= 1.0 else "wrong"
                verdict = f'<span class="{css}">{_num(score, 2)}</span> {html.escape(r.prediction)}'
            figs.append(f"<figure>{pics}<figcaption><b>{html.escape(c['label'])}</b><br>{verdict}</figcaption>"
                        "</figure>")
        refs = ", ".join(sample.get("references", [])) or "–"
        question = html.escape(sample.get("question", ""))
        items.append(f'<div class="item"><div><b>{html.escape(sample_id)}</b>: {question}'
                     f" — reference: {html.escape(refs)}</div><div class=\"shows\">{''.join(figs)}</div></div>")
    return f'<div class="gallery">{"".join(items)}</div>'


def html_report(data: Mapping[str, Any], store: RunStore, svg: str) -> str:
    """``report.html``: the tables, the plot, and the gallery; one self-contained file."""
    out = ["<!doctype html><html><head><meta charset=\"utf-8\"><title>attnprompt evaluation report</title>",
           f"<style>{_STYLE}</style></head><body><h1>Evaluation report</h1>"]
    if data.get("backend"):
        out.append("<p>Answering VLM: " + html.escape(", ".join(f"{k} {v}" for k, v in data["backend"].items()))
                   + "</p>")
    header, rows = main_table(data)
    if rows:
        out += ["<h2>Results</h2>", f"<p>Headline metric per task; Δ: difference from <code>{BASELINE}</code> with a "
                "95 % paired-bootstrap interval; n: samples scored; failed: no answer (never scored).</p>",
                _html_table(header, rows), svg]
    for t in data["tasks"]:
        out += [f"<h2>{html.escape(t['name'])}</h2>",
                f"<p>{html.escape(t['source'])}. {t['samples']} samples; headline: {html.escape(t['headline'])}.</p>"]
        if t["notes"]:
            out.append(f"<p>{html.escape(t['notes'])}</p>")
        out.append(_html_table(*_metric_rows(t)))
        if t["categories"]:
            out += [f"<h3>{html.escape(t['headline'])} per category</h3>", _html_table(*_category_rows(t))]
        errors = [(c["label"], e) for c in t["conditions"] for e in c["errors"]]
        errors += [(c["label"], f"judge failed (unscored): {e}") for c in t["conditions"]
                   for e in c.get("judge_error_texts", [])]
        if errors:
            out.append("<h3>Failures</h3><ul>" + "".join(f"<li>{html.escape(label)}: {html.escape(e)}</li>"
                                                         for label, e in errors) + "</ul>")
        title = "Where the strategies disagree" if t["kind"] == "answer" else "Examples"
        out += [f"<h3>{title}</h3>", _gallery(t, store)]
    out.append("<h2>Configuration</h2>")
    for t in data["tasks"]:
        for c in t["conditions"]:
            config = json.dumps(data["configs"].get(c["config_hash"]), indent=1, sort_keys=True)
            out.append(f"<details><summary>{html.escape(t['name'])} · {html.escape(c['label'])} · "
                       f"{c['config_hash']}</summary><pre>{html.escape(config)}</pre></details>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
