"""Atomic file writes and append-only records: a reader (or a resumed run) never sees a
half-written file, and an interrupted run loses and duplicates nothing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
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
    or the complete new file — never a partial one. A file that cannot be written is an
    :class:`~attnprompt.errors.OutputError` naming it.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = atomic_write(p, lambda f: f.write("hi"), binary=False)
    >>> p.read_text()
    'hi'
    """
    [written] = atomic_write_all([(path, write, binary)])
    return written


def atomic_write_all(files: Sequence[tuple[str | os.PathLike, Callable[[Any], None], bool]]) -> list[Path]:
    """Write several files as one: every ``(path, write, binary)`` goes to a temporary file first, and
    only when all are complete are they renamed into place — so a failure leaves none of them (and
    the previous files, if any, as they were).

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_all([(d / "a.txt", lambda f: f.write("a"), False), (d / "sub", lambda f: f.write("b"), False)])
    [PosixPath('...a.txt'), PosixPath('...sub')]
    """
    from .errors import OutputError

    temps: list[tuple[str, Path]] = []
    try:
        for target, write, binary in files:
            path = Path(target)
            if path.is_dir():
                raise OutputError(f"{path} is a directory; give a file name to write to")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            except OSError as e:
                raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
            temps.append((tmp, path))
            try:
                with os.fdopen(fd, "wb" if binary else "w") as f:
                    write(f)
                    f.flush()
                    os.fsync(f.fileno())
                # mkstemp creates files readable by their owner only; give the result the permissions
                # any newly created file gets (0666 less the umask), as a plain open() would.
                os.chmod(tmp, 0o666 & ~_umask())
            except OSError as e:
                raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise
    return [path for _, path in temps]


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Raise :class:`~attnprompt.errors.OutputError` unless ``path`` can be written: not a directory,
    and its folder (or the nearest existing folder above it) takes a new file. Checked before the
    work whose result it will hold; nothing is left behind.

    >>> check_writable("/")
    Traceback (most recent call last):
    attnprompt.errors.OutputError: output / is a directory; give a file name
    """
    from .errors import OutputError

    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a directory; give a file name")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {what} {path}: {folder} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".attnprompt-probe.", dir=folder)
    except OSError as e:
        raise OutputError(f"cannot write {what} {path}: {folder}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(probe)
    return path


#: One file to write with :func:`atomic_write_all`: its path, what writes it, binary or text.
FileWrite = tuple[Path, Callable[[Any], None], bool]


def image_file(image: Image.Image, path: str | os.PathLike) -> FileWrite:
    """``image`` encoded for ``path`` (the format follows the suffix, PNG when in doubt), ready for
    :func:`atomic_write_all`.

    >>> image_file(Image.new("RGB", (4, 4)), "a.jpg")[0].suffix
    '.jpg'
    """
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return path, lambda f: f.write(buf.getbuffer()), True


def array_file(array: np.ndarray, path: str | os.PathLike) -> FileWrite:
    """``array`` as a lossless ``.npy`` for ``path``, ready for :func:`atomic_write_all`.

    >>> array_file(np.ones(2), "h.png")
    Traceback (most recent call last):
    attnprompt.errors.InputError: h.png: arrays are saved as .npy (lossless); use a .npy suffix
    """
    from .errors import InputError

    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise InputError(f"{path}: arrays are saved as .npy (lossless); use a .npy suffix")
    data = np.asarray(array)
    return path, lambda f: np.save(f, data, allow_pickle=False), True


def save_image(image: Image.Image, path: str | os.PathLike) -> Path:
    """Save ``image`` atomically; the format follows the suffix (PNG when in doubt).

    >>> import tempfile, pathlib
    >>> p = save_image(Image.new("RGB", (4, 4)), pathlib.Path(tempfile.mkdtemp()) / "a.png")
    >>> p.suffix
    '.png'
    """
    return atomic_write_all([image_file(image, path)])[0]


def save_array(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Save an array losslessly (``.npy``) and atomically.

    >>> import tempfile, pathlib
    >>> p = save_array(np.ones((2, 2), np.float32), pathlib.Path(tempfile.mkdtemp()) / "h.npy")
    >>> np.load(p).sum()
    np.float32(4.0)
    """
    return atomic_write_all([array_file(array, path)])[0]


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


def config_hash_of(settings: Mapping[str, Any]) -> str:
    """A short, stable digest of a configuration (JSON with sorted keys): what a finished item
    records, so that a rerun reuses it only when its configuration is the same.

    >>> config_hash_of({"b": 1, "a": [2, 3]}) == config_hash_of({"a": (2, 3), "b": 1})
    True
    """
    text = json.dumps(settings, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """What differs between two configurations, as ``key: old → new`` (for messages).

    >>> config_changes({"kernel": 3, "gray": 0.0}, {"kernel": 1, "gray": 0.0})
    'kernel: 3 → 1'
    """
    keys = sorted(set(old) | set(new))
    parts = [f"{k}: {_short(old.get(k))} → {_short(new.get(k))}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(parts)


def _short(value: Any) -> str:
    text = json.dumps(value, default=_json_default) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."
