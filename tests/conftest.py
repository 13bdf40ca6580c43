"""Shared fixtures: tiny CLIP and VLM checkpoints built in code (random weights), saved once a session."""

from __future__ import annotations

import builders
import pytest


@pytest.fixture(scope="session")
def tiny_clip_dirs(tmp_path_factory):
    """{"b": path, "l": path}: two tiny CLIP checkpoints of different shapes."""
    root = tmp_path_factory.mktemp("clips")
    return {name: builders.build_tiny_clip(root / name, name, seed=i) for i, name in enumerate(builders.CLIP_SHAPES)}


@pytest.fixture(scope="session")
def tiny_clip_dir(tiny_clip_dirs):
    return tiny_clip_dirs["b"]


@pytest.fixture(scope="session")
def vlm_dirs(tmp_path_factory):
    """{family: path}: a tiny checkpoint of every supported VLM family."""
    root = tmp_path_factory.mktemp("vlms")
    return {f: builders.save(f, root / f, seed=i) for i, f in enumerate(builders.FAMILIES)}


@pytest.fixture(scope="session")
def llava_dir(vlm_dirs):
    return vlm_dirs["llava"]
