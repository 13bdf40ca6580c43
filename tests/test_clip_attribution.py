"""API-CLIP maths, checked exactly on tiny random CLIPs (two shapes, float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from attnprompt.attribution.clip import ClipAttributor, TruncationWarning, cls_contributions
from attnprompt.attribution.configs import ClipConfig
from attnprompt.capture import capture_outputs
from attnprompt.errors import InputError
from attnprompt.models import load_clip

SHAPES = ["b", "l"]


def attributor(path, dtype=torch.float64, **params) -> ClipAttributor:
    return ClipAttributor(load_clip(str(path), device="cpu", dtype=dtype), ClipConfig.from_preset(**params))


def random_image(seed: int, size=(57, 43)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layers", ["-2", "0:", "-1"])
def test_contributions_sum_to_the_real_attention_output(tiny_clip_dirs, shape, layers):
    """(a) Σ_t η_t (bias/T included) equals the block's attention output at the cls position."""
    attr = attributor(tiny_clip_dirs[shape], layers=layers)
    pixel_values, _ = attr.preprocess([random_image(1), random_image(2, (40, 40))])
    with torch.inference_mode():
        terms = attr.image_terms(pixel_values)
    assert set(terms["eta"]) == set(attr.layers)
    for layer, eta in terms["eta"].items():
        real = terms["attn_out"][layer][:, 0]
        total = eta.sum(1)
        rel = (total - real).norm() / real.norm()
        assert rel < 1e-6, (layer, float(rel))
        # and it is a real split: no single token carries the whole output
        assert eta[:, 1:].abs().sum() > 0


@pytest.mark.parametrize("shape", SHAPES)
def test_exact_linearisation_reassembles_the_image_embedding(tiny_clip_dirs, shape):
    """With exact centring, Σ_t 𝓛(η_t) + 𝓛(rest of the cls residual) + Pβ is the image embedding."""
    attr = attributor(tiny_clip_dirs[shape], layers="-1", centering="exact")
    pixel_values, _ = attr.preprocess([random_image(3)])
    vm = attr.model.vision_model
    with torch.inference_mode():
        terms = attr.image_terms(pixel_values)
        last = vm(pixel_values=pixel_values).last_hidden_state[:, 0]
        ln, proj = vm.post_layernorm, attr.model.visual_projection.weight
        sigma = torch.sqrt(last.var(-1, unbiased=False) + ln.eps)
        lin = lambda x: ((x - x.mean(-1, keepdim=True)) * ln.weight / sigma) @ proj.T  # noqa: E731
        eta = terms["eta"][attr.depth - 1][0]  # T×D
        rest = last[0] - eta.sum(0)
        rebuilt = lin(eta).sum(0) + lin(rest) + ln.bias @ proj.T
        # the attributor's psi is exactly lin(η_t) summed over the patch tokens' terms
        assert torch.allclose(terms["psi"][0], lin(eta[1:]), rtol=1e-9, atol=1e-12)
    assert torch.allclose(rebuilt, terms["image_embed"][0], rtol=1e-9, atol=1e-10)


def loop_reference_maps(attr: ClipAttributor, image: Image.Image, query: str) -> tuple[np.ndarray, np.ndarray]:
    """Ψᶜˡˢ and Ψᶜᵒᵐᵖ similarities written the slow, obvious way: loops over heads and tokens."""
    model, vm = attr.model, attr.model.vision_model
    pixel_values, _ = attr.preprocess([image])
    blocks = vm.encoder.layers
    with torch.inference_mode():
        inputs = {}
        hooks = [
            blocks[l].layer_norm1.register_forward_hook(lambda m, i, o, l=l: inputs.__setitem__(l, o))
            for l in range(attr.depth)
        ]
        try:
            out = vm(pixel_values=pixel_values)
        finally:
            for h in hooks:
                h.remove()
        with capture_outputs({"z": blocks[attr.comp_layer]}) as seen:
            vm(pixel_values=pixel_values)
        cls_final = out.last_hidden_state[0, 0]
        ln = vm.post_layernorm
        mu = cls_final.mean()
        sigma = torch.sqrt(((cls_final - mu) ** 2).mean() + ln.eps)
        P = model.visual_projection.weight
        image_embed = P @ ln(cls_final)
        text = attr.encode_text([query])[0]

        def L(x, centre):
            return P @ (ln.weight * (x - centre) / sigma)

        def sim(vec):
            if attr.config.similarity == "cosine":
                return float(vec @ text / vec.norm())
            return float(vec @ text / image_embed.norm())

        n_tok = pixel_values.shape[-1] // vm.config.patch_size
        T = n_tok * n_tok + 1
        psi = [torch.zeros_like(image_embed) for _ in range(T)]
        for l in attr.layers:
            att = blocks[l].self_attn
            x = inputs[l]
            H, hd = att.num_heads, att.head_dim
            eta = [att.out_proj.bias / T for _ in range(T)]  # η_t starts with its bias share B/T
            for h in range(H):
                sl = slice(h * hd, (h + 1) * hd)
                q = x[0, 0] @ att.q_proj.weight[sl].T + att.q_proj.bias[sl]
                scores = []
                for t in range(T):
                    k = x[0, t] @ att.k_proj.weight[sl].T + att.k_proj.bias[sl]
                    scores.append(float(q @ k) * att.scale)
                a = torch.softmax(torch.tensor(scores, dtype=x.dtype), 0)
                for t in range(T):
                    v = x[0, t] @ att.v_proj.weight[sl].T + att.v_proj.bias[sl]
                    eta[t] = eta[t] + a[t] * (att.out_proj.weight[:, sl] @ v)
            for t in range(T):
                centre = eta[t].mean() if attr.config.centering == "exact" else mu / T
                psi[t] = psi[t] + L(eta[t], centre)
        s_cls = np.array([sim(psi[t]) for t in range(1, T)]).reshape(n_tok, n_tok)
        z = seen["z"][0]
        s_comp = []
        for t in range(1, T):
            centre = z[t].mean() if attr.config.centering == "exact" else mu
            s_comp.append(sim(L(z[t], centre) + P @ ln.bias))
        return s_cls, np.array(s_comp).reshape(n_tok, n_tok)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("preset", ["reference", "paper"])
def test_fast_path_equals_loop_over_heads_and_tokens(tiny_clip_dirs, shape, preset):
    """(b) the vectorised decomposition equals a loop over heads and tokens, for both presets."""
    attr = attributor(tiny_clip_dirs[shape], preset=preset)
    image = random_image(5)
    query = "a red star next to a blue circle"
    [m] = attr.attribute([image], [query])
    s_cls, s_comp = loop_reference_maps(attr, image, query)
    np.testing.assert_allclose(m.parts["cls_similarity"], s_cls, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(m.parts["comp_similarity"], s_comp, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(m.grid, attr.combine(s_cls, s_comp), rtol=1e-5, atol=1e-6)


def test_permuting_patch_contents_permutes_the_map(tiny_clip_dirs):
    """(c) with position embeddings zeroed, CLIP is permutation-equivariant over patches, so
    moving patch blocks of pixels must move the map cells the same way."""
    attr = attributor(tiny_clip_dirs["l"], kernel=1, fit="squash")
    emb = attr.model.vision_model.embeddings
    saved = emb.position_embedding.weight.detach().clone()
    try:
        with torch.no_grad():
            emb.position_embedding.weight.zero_()
        s, p = attr.image_size, attr.model.config.vision_config.patch_size
        n = s // p
        base = np.asarray(random_image(7, (s, s)))
        perm = np.random.default_rng(0).permutation(n * n)
        moved = np.empty_like(base)
        for dst, src in enumerate(perm):
            (di, dj), (si, sj) = divmod(dst, n), divmod(src, n)
            moved[di * p : (di + 1) * p, dj * p : (dj + 1) * p] = base[si * p : (si + 1) * p, sj * p : (sj + 1) * p]
        for parts in ("both", "cls", "comp"):
            a = ClipAttributor(attr.clip, ClipConfig.from_preset(kernel=1, fit="squash", parts=parts))
            [m0, m1] = a.attribute([Image.fromarray(base), Image.fromarray(moved)], ["a green cross"] * 2)
            expected = m0.grid.reshape(-1)[perm].reshape(n, n)
            np.testing.assert_allclose(m1.grid, expected, rtol=1e-6, atol=1e-7)
            assert m0.grid.std() > 0.05  # the map is not flat, so the test can fail
    finally:
        with torch.no_grad():
            emb.position_embedding.weight.copy_(saved)


def test_batched_equals_one_by_one_and_reuses_images(tiny_clip_dirs):
    attr = attributor(tiny_clip_dirs["b"])
    attr.batch_size = 2
    imgs = [random_image(i, (30 + 7 * i, 40)) for i in range(5)]
    queries = ["a red star", "the blue circle", "What colour is the square?", "a cross", "a star"]
    batched = attr.attribute(imgs + [imgs[0]], queries + ["a purple triangle"])
    for img, q, m in zip(imgs, queries, batched):
        [single] = attr.attribute([img], [q])
        np.testing.assert_allclose(m.grid, single.grid, rtol=1e-6, atol=1e-8)
    # same image with another query: a different map from the same (cached) image terms
    assert not np.allclose(batched[0].grid, batched[5].grid)
    assert not np.allclose(batched[0].parts["cls_similarity"], batched[5].parts["cls_similarity"])


def test_queries_change_only_the_text_side(tiny_clip_dirs):
    attr = attributor(tiny_clip_dirs["b"])
    img = random_image(11)
    a, b = attr.attribute([img, img], ["a red star", "a blue circle"])
    assert not np.allclose(a.parts["cls_similarity"], b.parts["cls_similarity"])


def test_long_query_truncates_with_a_warning_that_counts_dropped_tokens(tiny_clip_dirs):
    attr = attributor(tiny_clip_dirs["b"])
    long_query = "red " * 100
    with pytest.warns(TruncationWarning, match=r"2\d token\(s\) dropped"):
        [m] = attr.attribute([random_image(0)], [long_query])
    assert m.grid.shape == (4, 4)


def test_presets_and_overrides_are_recorded_and_validated(tiny_clip_dirs):
    ref = ClipConfig.from_preset()
    assert (ref.preset, ref.layers, ref.enhance, ref.kernel, ref.centering, ref.similarity) == (
        "reference", "-2", 5.0, 3, "cls", "dot"
    )
    paper = ClipConfig.from_preset("paper", kernel=5)
    assert (paper.layers, paper.enhance, paper.kernel, paper.similarity) == ("-2:", 0.0, 5, "cosine")
    attr = attributor(tiny_clip_dirs["l"], preset="paper")
    assert attr.layers == (3, 4) and attr.comp_layer == 4
    d = attr.describe()
    assert d["layers"] == [3, 4] and d["model"] == str(tiny_clip_dirs["l"]) and d["method"] == "api-clip"
    with pytest.raises(InputError, match="api-clip has no parameter kernal; valid parameters: centering, comp_layer"):
        ClipConfig.from_preset(kernal=3)
    with pytest.raises(InputError, match="kernel must be an odd integer"):
        ClipConfig.from_preset(kernel=4)
    with pytest.raises(InputError, match="unknown preset 'papr'; valid presets: reference, paper"):
        ClipConfig.from_preset("papr")
    with pytest.raises(InputError, match="index 7 is out of range"):
        attributor(tiny_clip_dirs["b"], layers=7)
    with pytest.raises(InputError, match="parts must be one of"):
        ClipConfig.from_preset(parts="all")


def test_absolute_and_relative_layer_indices_agree(tiny_clip_dirs):
    img = random_image(2)
    a = attributor(tiny_clip_dirs["l"], layers=-2).attribute([img], ["a star"])[0]
    b = attributor(tiny_clip_dirs["l"], layers=3).attribute([img], ["a star"])[0]
    np.testing.assert_array_equal(a.grid, b.grid)


def test_cls_contributions_matches_torch_attention():
    """The pure function against torch's own multi-head attention on random data."""
    torch.manual_seed(0)
    B, T, D, H = 2, 7, 12, 3
    mha = torch.nn.MultiheadAttention(D, H, batch_first=True, bias=True).double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    with torch.no_grad():
        real, _ = mha(x, x, x, need_weights=False)
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
        b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
        eta = cls_contributions(
            x @ w_q.T + b_q,
            x @ w_k.T + b_k,
            x @ w_v.T + b_v,
            mha.out_proj.weight,
            mha.out_proj.bias,
            H,
            (D // H) ** -0.5,
        )
    torch.testing.assert_close(eta.sum(1), real[:, 0], rtol=1e-10, atol=1e-12)
