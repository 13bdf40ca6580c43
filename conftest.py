"""Settings for every test in the repository (tests/, the package's doctests, tools/).

No test may reach a model hub: fail fast instead of retrying for half a minute. Slow tests carry
the ``slow`` marker and run with ``--runslow``. ``tests/`` is importable from everywhere for its
one builders module (tiny models built in code).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# lmms-eval's model class can only be imported with lmms-eval installed (tests/test_lmms.py says how)
collect_ignore = [] if _importable("lmms_eval") else ["src/attnprompt/integrations/lmms_model.py"]
