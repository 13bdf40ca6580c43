import torch

from attnprompt.segmenters import nms


def _loop_nms(boxes, scores, thr):
    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / u if u > 0 else 0.0
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept = []
    for i in order:
        if all(iou(boxes[i], boxes[k]) <= thr for k in kept):
            kept.append(i)
    return kept


def test_nms_matches_a_straightforward_loop():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        xy = torch.rand(40, 2, generator=g) * 50
        boxes = torch.cat([xy, xy + 5 + torch.rand(40, 2, generator=g) * 20], 1)
        scores = torch.rand(40, generator=g)
        assert nms(boxes, scores, 0.5).tolist() == _loop_nms(boxes.tolist(), scores.tolist(), 0.5)


def test_fgvp_renderers_on_a_hand_made_mask():
    import numpy as np
    from PIL import Image

    from attnprompt.segmenters.drawing import fgvp_mask, fgvp_rbm

    a = np.zeros((40, 60, 3), np.uint8)
    a[:, 30:] = 200
    a[::2] = 90
    img = Image.fromarray(a)
    m = np.zeros((40, 60), bool)
    m[10:20, 5:25] = True
    green = np.asarray(fgvp_mask(img, [m])).astype(int)
    want = np.floor(a * 0.5 + np.array([0, 255, 0]) * 0.5 + 0.5).astype(int)
    assert (green[m] == want[m]).all() and (green[~m] == a[~m]).all()
    blur = np.asarray(fgvp_rbm(img, [m]))
    assert (blur[m] == a[m]).all() and (blur[~m] != a[~m]).any()


# -- SoM's marks -------------------------------------------------------------------------------------

import builders  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from attnprompt.errors import InputError, ModelLoadError  # noqa: E402
from attnprompt.segmenters import (  # noqa: E402
    FGVP_SETTINGS,
    MASK_SIDE,
    SOM_SETTINGS,
    MaskSettings,
    Segmentation,
    get_segmenter,
    som,
)
from attnprompt.segmenters.drawing import SOM_ALPHA, _text_colour, som_marks, som_size  # noqa: E402
from attnprompt.segmenters.sam import mask_boxes, remove_small_regions, stability_score  # noqa: E402


def _two_masks():
    img = np.full((120, 160, 3), 100, np.uint8)
    big = np.zeros((120, 160), bool)
    big[10:90, 10:100] = True  # 80×90, no holes
    ring = np.zeros((120, 160), bool)
    ring[60:110, 110:150] = True
    ring[75:95, 120:140] = False  # a hole: no outline (SoM draws holed masks as an image, not a polygon)
    return Image.fromarray(img), [ring, big]


def test_som_numbers_masks_by_area_at_their_innermost_point():
    _, masks = _two_masks()
    marks = som_marks(masks)
    assert [(m.label, m.mask) for m in marks] == [("1", 1), ("2", 0)]  # the big one first
    # the big box's innermost pixels: rows 49–50 × columns 49–60 (40 px from its top and bottom edges); the
    # middle of those 24 in row-major order is row 50, column 49; the text goes 2 px right and 6 px up
    assert (marks[0].x, marks[0].y) == (49 + 2, 50 - 6)
    assert marks == som_marks(masks) and marks != som_marks(masks, seed=1)  # seeded colours


def test_som_tints_outlines_and_labels_legibly():
    img, masks = _two_masks()
    out = np.asarray(som(img, masks)).astype(int)
    marks = som_marks(masks)
    colour = {m.mask: np.array(m.colour) for m in marks}
    base = np.asarray(img).astype(int)
    # outside every mask and label: untouched
    assert (out[0:8, :] == base[0:8, :]).all() and (out[:, 152:] == base[:, 152:]).all()
    # inside the big mask, away from its edge and label: the colour at alpha 0.1
    want = np.floor(base[80, 20] * (1 - SOM_ALPHA) + colour[1] * SOM_ALPHA + 0.5)
    assert (out[80, 20] == want).all()
    # its edge is the colour itself (a polygon's outline); the holed ring has none
    assert (out[10, 60] == colour[1]).all() and (out[60, 112] != colour[0]).any()
    # the label: a box of the contrasting shade holding text pixels of the label colour
    box = out[marks[0].y : marks[0].y + 20, marks[0].x - 6 : marks[0].x + 6]
    text, shade = _text_colour(tuple(marks[0].colour))
    text = np.round(np.array(text) * 255)
    assert (np.abs(box - text).sum(-1) < 60).sum() > 15  # the digit's strokes
    under = np.array([0, 0, 0]) if shade == "black" else np.array([255, 255, 255])
    assert (np.abs(box - under).sum(-1) < 150).sum() > 15  # the box around them


def test_som_draws_at_a_shorter_side_of_640():
    assert som_size((4000, 3000)) == (853, 640) and som_size((300, 600)) == (640, 1280)


# -- the steps of SAM's automatic mask generation ------------------------------------------------------


def test_mask_steps_on_hand_made_masks():
    import torch

    logits = torch.zeros(1, 10, 10) - 5
    logits[0, 2:8, 2:8] = 0.5  # above -1 and 0, not above +1
    logits[0, 4:6, 4:6] = 3.0
    assert stability_score(logits, 0.0, 1.0).item() == pytest.approx(4 / 36)
    assert mask_boxes(logits > 0).tolist() == [[2.0, 2.0, 7.0, 7.0]]
    m = np.zeros((12, 12), bool)
    m[1:9, 1:9] = True
    m[4, 4] = False  # a 1-px hole
    m[11, 11] = True  # a 1-px island
    filled, changed = remove_small_regions(m, 3, "holes")
    assert changed and filled[4, 4] and filled.sum() == m.sum() + 1
    cleaned, changed = remove_small_regions(filled, 3, "islands")
    assert changed and not cleaned[11, 11] and cleaned.sum() == 64


def test_settings_are_checked_and_recorded():
    assert FGVP_SETTINGS.to_dict() == {
        "points_per_side": 16, "pred_iou_thresh": 0.86, "stability_score_thresh": 0.92, "stability_score_offset": 0.7,
        "box_nms_thresh": 0.7, "min_mask_region_area": 400}
    assert SOM_SETTINGS.to_dict()["points_per_side"] == 32 and SOM_SETTINGS.pred_iou_thresh == 0.88
    with pytest.raises(InputError, match="pred_iou_thresh must be a number in"):
        MaskSettings(pred_iou_thresh=1.5)


# -- the SAM segmenter on a tiny random SamModel --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sam():
    return builders.build_tiny_sam()


def _reference_masks(sam, image, n, iou_thr, stab_thr, offset, nms_thr):
    """The same image through transformers' own mask-generation steps (``generate_crop_boxes``,
    ``post_process_masks``, ``filter_masks``) and our NMS in place of torchvision's."""
    import torch
    from transformers.models.sam.image_processing_pil_sam import _rle_to_mask

    from attnprompt.segmenters import nms

    p = sam.processor
    crop_boxes, points, _, labels = p.generate_crop_boxes(image, target_size=p.size["longest_edge"], crop_n_layers=0,
                                                          points_per_crop=n)
    inputs = p(images=image, return_tensors="pt")
    with torch.inference_mode():
        emb = sam.model.get_image_embeddings(inputs["pixel_values"])
        out = sam.model(image_embeddings=emb, input_points=points.float(), input_labels=labels, multimask_output=True)
    logits = p.post_process_masks(out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"],
                                  binarize=False)[0]
    rles, scores, boxes = p.filter_masks(logits, out.iou_scores[0], (image.height, image.width), crop_boxes[0],
                                         pred_iou_thresh=iou_thr, stability_score_thresh=stab_thr,
                                         stability_score_offset=offset)
    masks = np.stack([_rle_to_mask(r) for r in rles])
    keep = nms(boxes.float(), scores, nms_thr)
    return masks[keep.numpy()], scores[keep].numpy(), out.iou_scores


def test_sam_segmenter_equals_transformers_own_steps(tiny_sam):
    image = builders.random_image(40, 30, seed=3)
    _, _, all_scores = _reference_masks(tiny_sam, image, 8, 0.0, 0.0, 1.0, 0.7)
    iou_thr = float(all_scores.flatten().median())  # random weights: keep about half
    # NMS 1.0 keeps every filtered mask (a random SAM's masks are much alike); 0.7 is SAM's
    for nms_thr, at_least in ((1.0, 5), (0.7, 1)):
        want, want_scores, _ = _reference_masks(tiny_sam, image, 8, iou_thr, 0.5813, 0.25, nms_thr)
        seg = tiny_sam.segment([image], MaskSettings(8, iou_thr, 0.5813, 0.25, nms_thr, points_per_batch=7))[0]
        assert len(want) >= at_least and seg.masks.shape == (len(want), 30, 40) and seg.image_size == (40, 30)
        assert (seg.masks == want).all()
        np.testing.assert_allclose(seg.scores, want_scores, rtol=1e-6)
    # the batch of points is speed, not result
    again = builders.build_tiny_sam().segment([image], MaskSettings(8, iou_thr, 0.5813, 0.25, 0.7, points_per_batch=64))
    assert (again[0].masks == seg.masks).all()


def test_sam_segmenter_cleans_caches_and_bounds_masks(tiny_sam, tmp_path):
    image = builders.random_image(40, 30, seed=4)
    loose = MaskSettings(4, 0.0, 0.0, 1.0, 0.7)
    seg = tiny_sam.segment([image], loose)[0]
    cleaned = tiny_sam.segment([image], MaskSettings(4, 0.0, 0.0, 1.0, 0.7, min_mask_region_area=30))[0]
    for m in cleaned.masks:  # no island or hole below 30 px is left (or the mask is one small island)
        for part in (m, ~m):
            from scipy import ndimage

            sizes = np.bincount(ndimage.label(part, structure=np.ones((3, 3)))[0].ravel())[1:]
            assert (sizes >= 30).all() or (part is m and len(sizes) == 1)
    before = tiny_sam.info()["hits"]
    tiny_sam.segment([image.copy()], loose)
    assert tiny_sam.info()["hits"] == before + 1  # the same pixels: from the cache
    big = builders.random_image(2048, 1024, seed=5)
    huge = tiny_sam.segment([big], loose)[0]
    assert huge.masks.shape[1:] == (MASK_SIDE // 2, MASK_SIDE) and huge.image_size == (2048, 1024)
    assert huge.mask(0).shape == (1024, 2048) and len(seg) > 0


def test_sam_loads_from_a_directory_and_fails_clearly(tmp_path, tiny_clip_dir):
    path = builders.save_tiny_sam(tmp_path / "sam")
    seg = get_segmenter(str(path)).segment([builders.random_image(40, 30)], MaskSettings(4, 0.0, 0.0))[0]
    assert seg.masks.shape[1:] == (30, 40)
    with pytest.raises(ModelLoadError, match="is a 'clip' checkpoint; the SAM segmenter needs a SAM one"):
        get_segmenter(str(tiny_clip_dir))
    with pytest.raises(ModelLoadError, match="--segmenter PATH"):
        get_segmenter(str(tmp_path / "nowhere/sam"))
    with pytest.raises(InputError, match="a segmenter is 'shapes', 'sam'"):
        get_segmenter(3)


# -- the shapes segmenter ----------------------------------------------------------------------------------


def test_shapes_segmenter_gives_the_scenes_masks():
    from attnprompt.shapes import make_scene
    from attnprompt.shapes.detail import make_detail

    scene = make_scene(11, n_objects=5, size=224)
    seg = get_segmenter("shapes").segment([scene.image.copy()])[0]
    assert seg.names == tuple(o.name for o in scene.objects)
    assert all((m == o.mask).all() for m, o in zip(seg.masks, scene.objects)) and (seg.scores == 1).all()
    assert [tuple(b) for b in seg.boxes()] == [o.box for o in scene.objects]
    detail = make_detail(800_003, ratio=2, scene_size=64)
    seg = get_segmenter("shapes").segment([detail.image])[0]
    assert [tuple(b) for b in seg.boxes()] == [detail.box_of(o) for o in detail.scene.objects]
    resized = get_segmenter("shapes").segment([scene.image], sizes=[(448, 448)])[0]
    assert resized.masks.shape == (5, 448, 448)
    assert resized.masks[0][::2, ::2].tolist() == scene.objects[0].mask.tolist()
    with pytest.raises(InputError, match="this image is not one; for other images use --segmenter sam"):
        get_segmenter("shapes").segment([Image.new("RGB", (50, 50), (3, 4, 5))])


def test_a_segmentation_checks_its_masks():
    with pytest.raises(InputError, match=r"masks must be \(N, h, w\)"):
        Segmentation(np.ones((4, 4), bool), np.ones(1), (4, 4))
