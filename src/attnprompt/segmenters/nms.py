"""Greedy box non-maximum suppression in pure torch (what ``torchvision.ops.nms`` does)."""

from __future__ import annotations

import torch

from ..errors import InputError


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of ``(x0, y0, x1, y1)`` boxes: ``a`` (N, 4), ``b`` (M, 4) → (N, M).

    >>> box_iou(torch.tensor([[0., 0., 2., 2.]]), torch.tensor([[1., 0., 3., 2.]])).tolist()
    [[0.3333333432674408]]
    """
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.7) -> torch.Tensor:
    """Indices of the boxes kept, best score first: each box suppresses every lower-scored box whose
    IoU with it exceeds ``iou_threshold`` (SAM's automatic mask generation uses 0.7).

    >>> nms(torch.tensor([[0., 0., 2., 2.], [0., 0., 2., 2.1], [5., 5., 6., 6.]]), torch.tensor([.9, .8, .7])).tolist()
    [0, 2]
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise InputError(f"nms takes boxes (N, 4) and scores (N,); got {tuple(boxes.shape)} and {tuple(scores.shape)}")
    order = torch.argsort(scores.float(), descending=True, stable=True)
    iou = box_iou(boxes.float()[order], boxes.float()[order])
    alive = torch.ones(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if alive[i]:
            alive[i + 1:] &= iou[i, i + 1:] <= iou_threshold
    return order[alive]
