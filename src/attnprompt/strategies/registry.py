"""The answering strategies by name: name → Strategy class, imported on first use (an unknown name is an
error listing the valid ones). Your own: ``STRATEGIES.register("mine", MyStrategy)``.

>>> STRATEGIES.names()[:3]
('plain', 'step-by-step', 'api')
"""

from __future__ import annotations

from ..registry import Registry

#: Answering strategies: name → Strategy class.
STRATEGIES = Registry(
    "strategy",
    {
        "plain": "attnprompt.strategies.plain:Plain",
        "step-by-step": "attnprompt.strategies.step_by_step:StepByStep",
        "api": "attnprompt.strategies.api:Api",
        "api-reemphasize": "attnprompt.strategies.reemphasize:ApiReemphasize",
        "api-evaluate": "attnprompt.strategies.evaluate:ApiEvaluate",
        "self-reflect": "attnprompt.strategies.reflect:SelfReflect",
        "ensemble": "attnprompt.strategies.ensemble:Ensemble",
        "carve": "attnprompt.strategies.carve:Carve",
        # searched, refined and gated zooms (issue 38)
        "zoom-search": "attnprompt.strategies.zoom_search:ZoomSearch",
        "zoom-refine": "attnprompt.strategies.zoom_refine:ZoomRefine",
        "auto": "attnprompt.strategies.auto:Auto",
        # the API paper's segmentation baselines (Table 1), from a segmenter's masks
        "fgvp-mask": "attnprompt.strategies.baselines:FgvpMask",
        "fgvp-rbm": "attnprompt.strategies.baselines:FgvpRbm",
        "som": "attnprompt.strategies.baselines:Som",
        # rows for scale on tasks that know where the answer lies (they read ground truth)
        "zoom-oracle": "attnprompt.strategies.zoom_reference:ZoomOracle",
        "zoom-centre": "attnprompt.strategies.zoom_reference:ZoomCentre",
    },
    plural="strategies",
)

