"""Rendering: grid post-processing, resize alignment, overlay algebra, visuals."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from attnprompt import render


def naive_mean_filter(x: np.ndarray, k: int) -> np.ndarray:
    r = k // 2
    h, w = x.shape
    out = np.zeros_like(x, dtype=float)
    for i in range(h):
        for j in range(w):
            acc = 0.0
            for di in range(-r, r + 1):
                for dj in range(-r, r + 1):
                    ii, jj = min(max(i + di, 0), h - 1), min(max(j + dj, 0), w - 1)
                    acc += x[ii, jj]
            out[i, j] = acc / (k * k)
    return out


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_mean_filter_equals_naive_replicate_padding(k):
    x = np.random.default_rng(k).random((6, 9))
    np.testing.assert_allclose(render.mean_filter(x, k), naive_mean_filter(x, k), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [0, 2, -1, 3.0])
def test_mean_filter_rejects_bad_kernels(k):
    with pytest.raises(ValueError, match="odd integer"):
        render.mean_filter(np.zeros((3, 3)), k)


def test_normalisations_and_soft_or():
    x = np.array([[1.0, 3.0], [2.0, 5.0]])
    np.testing.assert_allclose(render.minmax(x), [[0, 0.5], [0.25, 1]])
    np.testing.assert_allclose(render.inverted_minmax(x), [[1, 0.5], [0.75, 0]])
    assert np.all(render.minmax(np.full((2, 2), 3.0), constant=1.0) == 1.0)
    e = render.enhance(x, 5.0)
    z = (x - x.mean()) / x.std()
    np.testing.assert_allclose(e, 1 / (1 + np.exp(-5 * z)))
    assert np.argmax(e) == np.argmax(x)  # monotone
    a, b = np.random.default_rng(0).random((2, 4, 4))
    np.testing.assert_allclose(render.soft_or(a, b), 1 - (1 - a) * (1 - b))
    assert np.all(render.soft_or(a, b) >= np.maximum(a, b) - 1e-12)


@pytest.mark.parametrize("size", [(70, 50), (64, 64), (13, 31)])
@pytest.mark.parametrize("resample", ["nearest", "bilinear", "bicubic", "lanczos"])
def test_upsample_shape_dtype_range(size, resample):
    grid = np.random.default_rng(1).random((5, 5)) * 1.4 - 0.2
    hm = render.upsample(np.clip(grid, 0, 1), size, resample=resample)
    assert hm.shape == (size[1], size[0]) and hm.dtype == np.float32
    assert hm.min() >= 0.0 and hm.max() <= 1.0


def test_grid_cells_land_on_their_pixel_regions():
    """Cell (i, j) of an h×w grid covers pixels [j·W/w, (j+1)·W/w) × [i·H/h, (i+1)·H/h)."""
    h, w, W, H = 4, 5, 100, 80
    for i, j in [(0, 0), (1, 3), (3, 4), (2, 1)]:
        grid = np.zeros((h, w))
        grid[i, j] = 1.0
        near = render.upsample(grid, (W, H), resample="nearest")
        ys, xs = np.nonzero(near)
        assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (
            i * H // h,
            (i + 1) * H // h,
            j * W // w,
            (j + 1) * W // w,
        )
        smooth = render.upsample(grid, (W, H), resample="bilinear")
        yi, xi = np.unravel_index(np.argmax(smooth), smooth.shape)
        assert i * H / h <= yi < (i + 1) * H / h and j * W / w <= xi < (j + 1) * W / w


def test_extent_crops_the_letterbox_padding():
    """A 4×4 grid whose top and bottom rows covered padding: only the middle rows reach the image."""
    grid = np.array([[0.9] * 4, [0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8], [0.9] * 4])
    hm = render.upsample(grid, (40, 20), extent=(0.0, 0.25, 1.0, 0.75), resample="nearest")
    np.testing.assert_allclose(hm[:10, ::10][:, :4], [[0.1, 0.2, 0.3, 0.4]] * 10, rtol=1e-6)
    np.testing.assert_allclose(hm[10:, ::10][:, :4], [[0.5, 0.6, 0.7, 0.8]] * 10, rtol=1e-6)
    assert not np.any(np.isclose(hm, 0.9))


def test_overlay_algebra():
    rng = np.random.default_rng(2)
    img = Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8))
    rgb = np.asarray(img).astype(float)
    phi = rng.random((6, 7)).astype(np.float32)
    for gray in (0, 128, 255):
        out = np.asarray(render.overlay(img, phi, gray=gray)).astype(float)
        expected = rgb * phi[..., None] + (1 - phi[..., None]) * gray
        assert np.abs(out - expected).max() <= 0.5 + 1e-4  # quantised once
    assert np.array_equal(np.asarray(render.overlay(img, np.ones((6, 7)), gray=77)), np.asarray(img))
    assert np.all(np.asarray(render.overlay(img, np.zeros((6, 7)), gray=77)) == 77)
    half = np.asarray(render.overlay(img, np.full((6, 7), 0.5), gray=0)).astype(float)
    assert np.abs(half - rgb / 2).max() <= 0.5
    with pytest.raises(ValueError, match="does not match image size"):
        render.overlay(img, np.ones((7, 6)))
    with pytest.raises(ValueError, match=r"gray must be a level in \[0, 255\]"):
        render.overlay(img, phi, gray=300)


def test_blocked_upsample_and_overlay_agree_with_one_shot_and_pil(monkeypatch):
    img = Image.fromarray(np.random.default_rng(3).integers(0, 256, (37, 11, 3), dtype=np.uint8))
    phi = np.random.default_rng(4).random((37, 11))
    grid = np.random.default_rng(5).random((4, 3)).astype(np.float32)
    whole = np.asarray(render.overlay(img, phi, gray=40))
    up = render.upsample(grid, (11, 37), extent=(0.1, 0.0, 0.9, 1.0))
    monkeypatch.setattr(render, "_BLOCK_PIXELS", 5 * 11)  # 5 rows a block
    assert np.array_equal(np.asarray(render.overlay(img, phi, gray=40)), whole)
    np.testing.assert_array_equal(render.upsample(grid, (11, 37), extent=(0.1, 0.0, 0.9, 1.0)), up)
    # the separable weights reproduce PIL's own 2-D resize
    for resample in ("bilinear", "bicubic", "lanczos"):
        pil = Image.fromarray(grid, "F").resize((11, 37), render.RESAMPLE[resample], box=(0.3, 0, 2.7, 4))
        np.testing.assert_allclose(
            render.upsample(grid, (11, 37), extent=(0.1, 0.0, 0.9, 1.0), resample=resample),
            np.clip(np.asarray(pil), 0, 1),
            rtol=1e-5,
            atol=1e-6,
        )


def test_colorize_and_visual():
    ramp = np.linspace(0, 1, 50)[None, :]
    c = np.asarray(render.colorize(ramp)).astype(int)
    assert c.shape == (1, 50, 3)
    assert tuple(c[0, 0]) == (48, 18, 59) and tuple(c[0, -1]) == (180, 20, 20)
    img = Image.new("RGB", (300, 150), "white")
    v = render.visual(img, np.zeros((150, 300)), img, title="the red star", height=100)
    assert v.size == (3 * 200 + 6, 118)
