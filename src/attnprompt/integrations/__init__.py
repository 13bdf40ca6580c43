"""attnprompt inside other tools: lmms-eval (a model plugin, :mod:`.lmms`) and VLMEvalKit (a model,
:mod:`.vlmeval`), imported only when used. (Ray runs the evaluation's units as one of the harness's
executors: :mod:`attnprompt.evaluation.ray_executor`.)
"""

from __future__ import annotations

from typing import Any

#: lmms-eval's name for our model: ``lmms-eval --model attnprompt``.
LMMS_MODEL_ID = "attnprompt"


def lmms_manifest() -> Any:
    """lmms-eval's model manifest for attnprompt, the target of our ``lmms_eval.models`` entry point
    (pyproject.toml), which is how lmms-eval ≥ 0.7 finds models from other packages. Needs lmms-eval
    installed (docs/integrations.md, "Inside lmms-eval"); tests/test_lmms.py runs it through lmms-eval."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=LMMS_MODEL_ID, simple_class_path="attnprompt.integrations.lmms_model.AttnPrompt")
