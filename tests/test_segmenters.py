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
