"""SAM's automatic mask generation on stock ``transformers`` (``SamModel``), without torchvision.

The steps of ``SamAutomaticMaskGenerator`` with one crop layer (what SoM and FGVP run): the image
embedding once; a grid of ``points_per_side``² single-point prompts at the centres of a regular grid
(``(i + ½) / n`` of the width and height), ``points_per_batch`` at a time, three masks each
(``multimask_output``); a mask is kept when its predicted IoU exceeds ``pred_iou_thresh`` and its
stability score reaches ``stability_score_thresh``; masks binarised at logit 0; duplicates removed by
box NMS (:func:`~attnprompt.segmenters.nms.nms`, SAM's predicted IoU as the score); then, with
``min_mask_region_area``, holes and islands below that area removed from each mask and NMS run again
preferring the masks that did not change. The image processor is transformers' PIL one
(``SamImageProcessorPil``: resize the longest side to 1024, normalise, pad), so nothing needs
torchvision (transformers' own ``mask-generation`` pipeline does: it calls ``torchvision.ops``).

Masks are kept at the image's size up to :data:`~attnprompt.segmenters.base.MASK_SIDE` on the longest
side; the area threshold is scaled with them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from ..errors import InputError, ModelLoadError
from .base import MaskSettings, Segmentation, Segmenter, mask_size
from .nms import nms

#: SAM ViT-H, the checkpoint SoM and FGVP ran (``sam_vit_h_4b8939``), in transformers' format.
DEFAULT_SAM = "facebook/sam-vit-huge"


def point_grid(n: int) -> np.ndarray:
    """SAM's ``build_point_grid``: n² points (x, y) in [0, 1], x fastest, at the cells' centres.

    >>> point_grid(2).tolist()
    [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    """
    side = np.linspace(1 / (2 * n), 1 - 1 / (2 * n), n)
    xs, ys = np.tile(side[None, :], (n, 1)), np.tile(side[:, None], (1, n))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def stability_score(logits: Any, threshold: float, offset: float) -> Any:
    """Area above ``threshold + offset`` over area above ``threshold - offset``, per mask (…, H, W); NaN
    for a mask empty at both (no threshold keeps it, as in SAM).

    >>> import torch
    >>> stability_score(torch.tensor([[[2.0, 0.5, -2.0]], [[-5.0, -5.0, -5.0]]]), 0.0, 1.0).tolist()
    [0.5, nan]
    """
    inner = (logits > threshold + offset).flatten(-2).sum(-1).float()
    outer = (logits > threshold - offset).flatten(-2).sum(-1).float()
    return inner / outer


def remove_small_regions(mask: np.ndarray, area: float, mode: str) -> tuple[np.ndarray, bool]:
    """SAM's ``remove_small_regions``: fill the holes (``mode="holes"``) or drop the islands
    (``"islands"``) of fewer than ``area`` pixels (8-connected); an all-small mask keeps its largest
    island. Returns the mask and whether it changed.

    >>> m = np.zeros((6, 6), bool); m[0:4, 0:4] = True; m[1, 1] = False; m[5, 5] = True
    >>> filled, changed = remove_small_regions(m, 2, "holes"); bool(filled[1, 1]), changed
    (True, True)
    >>> kept, _ = remove_small_regions(m, 2, "islands"); bool(kept[5, 5]), bool(kept[0, 0])
    (False, True)
    """
    from scipy import ndimage

    if mode not in ("holes", "islands"):
        raise InputError(f"mode is {mode!r}; valid: holes, islands")
    holes = mode == "holes"
    labels, n = ndimage.label(mask ^ holes, structure=np.ones((3, 3), int))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    small = [i + 1 for i, s in enumerate(sizes) if s < area]
    if not small:
        return mask, False
    if holes:
        return mask | np.isin(labels, small), True
    keep = [i + 1 for i in range(n) if i + 1 not in small] or [int(np.argmax(sizes)) + 1]
    return np.isin(labels, keep), True


def mask_boxes(masks: Any) -> Any:
    """Tight boxes (x0, y0, x1, y1) of boolean masks (N, H, W) as SAM's ``batched_mask_to_box``
    (inclusive ends; an empty mask gets [0, 0, 0, 0]).

    >>> import torch
    >>> m = torch.zeros(1, 4, 5, dtype=torch.bool); m[0, 1:3, 2:5] = True
    >>> mask_boxes(m).tolist()
    [[2.0, 1.0, 4.0, 2.0]]
    """
    import torch

    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, 4)
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    ar_h, ar_w = torch.arange(h).expand(n, h), torch.arange(w).expand(n, w)
    y1 = torch.where(rows, ar_h, -1).max(dim=1).values
    y0 = torch.where(rows, ar_h, h).min(dim=1).values
    x1 = torch.where(cols, ar_w, -1).max(dim=1).values
    x0 = torch.where(cols, ar_w, w).min(dim=1).values
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    empty = ~rows.any(dim=1)
    boxes[empty] = 0
    return boxes


class SamSegmenter(Segmenter):
    """SAM (``SamModel`` + ``SamImageProcessorPil``) as a segmenter; :meth:`load` takes a hub id or a
    local directory (tests build a tiny random one in code: ``tests/builders.py``).
    """

    name = "sam"

    def __init__(self, model: Any, processor: Any, model_id: str, *, cache_size: int = 64) -> None:
        super().__init__(model_id, cache_size=cache_size)
        self.model = model
        self.processor = processor
        side = int(processor.size["longest_edge"])
        if side != int(model.config.vision_config.image_size):
            raise ModelLoadError(
                f"SAM {model_id!r}: its processor resizes to {side} px but its vision encoder takes "
                f"{model.config.vision_config.image_size} px; use the processor saved with the model")

    @classmethod
    def load(cls, name: str | None = None, *, device: str | None = None, dtype: Any = None) -> SamSegmenter:
        """SAM from a hub id (default :data:`DEFAULT_SAM`) or a local directory (``save_pretrained``)."""
        from ..models import _cached, from_pretrained, pick_device, pick_dtype, read_config

        name = name or DEFAULT_SAM
        location, cfg = read_config(name, "segmenter")
        if cfg and cfg.get("model_type") != "sam":
            raise ModelLoadError(f"segmenter {name!r} is a {cfg.get('model_type')!r} checkpoint; the SAM segmenter "
                                 f"needs a SAM one (model_type 'sam', e.g. {DEFAULT_SAM})")
        dev, dt = pick_device(device), pick_dtype(dtype)

        def build() -> SamSegmenter:
            from transformers import SamModel
            from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

            model = from_pretrained(SamModel.from_pretrained, name, location, "segmenter", dtype=dt)
            processor = from_pretrained(SamImageProcessorPil.from_pretrained, name, location, "segmenter")
            return cls(model.eval().to(dev), processor, name)

        return _cached(("sam", location, dev, str(dt)), build)

    def _segment(self, image: Image.Image, settings: MaskSettings, size: tuple[int, int]) -> Segmentation:
        import torch

        image = image.convert("RGB")
        if image.size != size:
            image = image.resize(size, Image.Resampling.BICUBIC)
        model = self.model
        param = next(model.parameters())
        inputs = self.processor(images=image, return_tensors="pt")
        rh, rw = (int(v) for v in inputs["reshaped_input_sizes"][0])
        mw, mh = mask_size(size)
        with torch.inference_mode():
            embedding = model.get_image_embeddings(inputs["pixel_values"].to(param.device, param.dtype))
            points = torch.as_tensor(point_grid(settings.points_per_side) * np.array([rw, rh]), dtype=torch.float32)
            kept_masks, kept_scores = [], []
            for start in range(0, len(points), settings.points_per_batch):
                batch = points[start : start + settings.points_per_batch]
                prompts = batch[None, :, None, :].to(param.device, param.dtype)
                out = model(image_embeddings=embedding, input_points=prompts,
                            input_labels=torch.ones(1, len(batch), 1, dtype=torch.long, device=param.device),
                            multimask_output=True)
                scores = out.iou_scores[0].flatten().float().cpu()
                low = out.pred_masks[0].flatten(0, 1).float().cpu()  # (points × 3, h, w) logits
                good = scores > settings.pred_iou_thresh  # before upsampling: the filters are per mask
                if not good.any():
                    continue
                logits = self.processor.post_process_masks([low[good][None]], [(mh, mw)], [(rh, rw)],
                                                           binarize=False)[0][0]
                stability = stability_score(logits, 0.0, settings.stability_score_offset)
                stable = stability >= settings.stability_score_thresh
                kept_masks.append(logits[stable] > 0.0)
                kept_scores.append(scores[good][stable])
        masks = torch.cat(kept_masks) if kept_masks else torch.zeros(0, mh, mw, dtype=torch.bool)
        scores = torch.cat(kept_scores) if kept_scores else torch.zeros(0)
        if not len(masks):
            return Segmentation(np.zeros((0, mh, mw), bool), np.zeros(0), size)
        keep = nms(mask_boxes(masks), scores, settings.box_nms_thresh)
        found, scores = masks[keep].numpy(), scores[keep]
        if settings.min_mask_region_area > 0:
            found, scores = _clean(found, scores, settings, (mw * mh) / (size[0] * size[1]))
        return Segmentation(np.asarray(found, dtype=bool), np.asarray(scores, dtype=np.float64), size)


def _clean(masks: np.ndarray, scores: Any, settings: MaskSettings, scale: float) -> tuple[np.ndarray, Any]:
    """SAM's ``postprocess_small_regions``: holes then islands below the area, then NMS that prefers
    the unchanged masks (score 1) to the changed ones (score 0)."""
    import torch

    area = settings.min_mask_region_area * scale
    cleaned, unchanged = [], []
    for m in masks:
        m, holes = remove_small_regions(m, area, "holes")
        m, islands = remove_small_regions(m, area, "islands")
        cleaned.append(m)
        unchanged.append(not (holes or islands))
    stack = torch.as_tensor(np.stack(cleaned))
    keep = nms(mask_boxes(stack), torch.tensor(unchanged, dtype=torch.float32), settings.box_nms_thresh)
    return stack[keep].numpy(), scores[keep]

