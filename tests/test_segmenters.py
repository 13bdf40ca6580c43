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

    from attnprompt.segmenters.prompts import fgvp_mask, fgvp_rbm

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
