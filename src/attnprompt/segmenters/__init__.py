"""Segmenters for the query-agnostic baselines (FGVP, SoM; issue 31) — so far the box NMS that SAM's
automatic mask generation needs, in pure torch (transformers' own uses torchvision, which we never install)."""

from .nms import box_iou, nms
from .prompts import fgvp_mask, fgvp_rbm

__all__ = ["box_iou", "fgvp_mask", "fgvp_rbm", "nms"]
