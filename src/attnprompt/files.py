"""Atomic file writes and append-only records: a reader (or a resumed run) never sees a
half-written file, and an interrupted run loses and duplicates nothing."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def _umask() -> int:
    # The umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], *, binary: bool = True) -> Path:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, then rename it into place.

    The rename is atomic on POSIX and Windows, so ``path`` is either absent, the old file,
    or the complete new file — never a partial one.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = atomic_write(p, lambda f: f.write("hi"), binary=False)
    >>> p.read_text()
    'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates files readable by their owner only; give the result the permissions
        # any newly created file gets (0666 less the umask), as a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def save_image(image: Image.Image, path: str | os.PathLike) -> Path:
    """Save ``image`` atomically; the format follows the suffix (PNG when in doubt).

    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> p = save_image(Image.new("RGB", (4, 4)), pathlib.Path(tempfile.mkdtemp()) / "a.png")
    >>> p.suffix
    '.png'
    """
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return atomic_write(path, lambda f: f.write(buf.getbuffer()))


def save_array(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Save an array losslessly (``.npy``) and atomically.

    >>> import tempfile, pathlib, numpy as np
    >>> p = save_array(np.ones((2, 2), np.float32), pathlib.Path(tempfile.mkdtemp()) / "h.npy")
    >>> np.load(p).sum()
    np.float32(4.0)
    """
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise ValueError(f"{path}: arrays are saved as .npy (lossless); use a .npy suffix")
    return atomic_write(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False))


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON, atomically.

    >>> import tempfile, pathlib
    >>> save_json({"a": 1}, pathlib.Path(tempfile.mkdtemp()) / "c.json").read_text()
    '{\\n  "a": 1\\n}'
    """
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default)
    return atomic_write(path, lambda f: f.write(text), binary=False)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (tuple, set, frozenset)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# -- append-only records, the building blocks of resumable runs ---------------------------------


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record as a JSON line and flush it to disk, so a finished item stays finished.

    A run killed mid-append leaves at most a torn last line, which :func:`read_jsonl` drops.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.jsonl"
    >>> append_jsonl(p, {"id": "a"}); append_jsonl(p, {"id": "b"}); [r["id"] for r in read_jsonl(p)]
    ['a', 'b']
    """
    line = json.dumps(record, ensure_ascii=False, default=_json_default) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a JSONL file (none if it does not exist). Lines that are not complete JSON
    objects — a run killed mid-append — are dropped, and the file is rewritten without them.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.jsonl"
    >>> _ = p.write_text('{"id": "a"}\\n{"id": "b', encoding="utf-8")
    >>> read_jsonl(p), p.read_text(encoding="utf-8")
    ([{'id': 'a'}], '{"id": "a"}\\n')
    """
    path = Path(path)
    if not path.exists():
        return []
    records, good, torn = [], [], False
    for raw in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            record = json.loads(raw)
            if not raw.endswith("\n") or not isinstance(record, dict):
                raise ValueError("incomplete")
        except ValueError:
            torn = True
            continue
        records.append(record)
        good.append(raw)
    if torn:
        atomic_write(path, lambda f: f.write("".join(good)), binary=False)
    return records


def save_jsonl(path: str | os.PathLike, records: list[dict[str, Any]]) -> Path:
    """Write records as JSONL, atomically (replacing the file).

    >>> import tempfile, pathlib
    >>> save_jsonl(pathlib.Path(tempfile.mkdtemp()) / "f.jsonl", [{"a": 1}]).read_text()
    '{"a": 1}\\n'
    """
    text = "".join(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in records)
    return atomic_write(path, lambda f: f.write(text), binary=False)


class DirectoryLock:
    """An exclusive lock on an output directory, so two runs cannot interleave their writes; a
    second run is refused with a clear error rather than made to wait.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with DirectoryLock(d):
    ...     DirectoryLock(d).__enter__()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    attnprompt.errors.InputError: ... is in use by another attnprompt run; wait for it or pick another output directory
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.path = Path(directory) / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> DirectoryLock:
        from .errors import InputError

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - Windows: no advisory lock, run on
            pass
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise InputError(
                f"{self.path.parent} is in use by another attnprompt run; wait for it or pick another output directory"
            ) from None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def remove_stale_temporaries(directory: str | os.PathLike) -> None:
    """Delete temporary files a killed run left behind (see :func:`atomic_write`); call it only
    while holding the directory's :class:`DirectoryLock`, when none can be live.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / ".x.png.abc.tmp").write_bytes(b"")
    >>> remove_stale_temporaries(d); list(d.iterdir())
    []
    """
    for p in Path(directory).glob(".*.tmp"):
        try:
            p.unlink()
        except OSError:
            pass
