"""Atomic file writes: a reader (or a resumed run) never sees a half-written file."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

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
