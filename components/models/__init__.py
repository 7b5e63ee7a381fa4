"""AU models: one module or package per family, each registering its variants by name.

Adding a model is one new module (or package) plus its import here. The registry
(``components.models.registry``) builds models, resolves pretrained weights and records what a
checkpoint needs to rebuild them.
"""

from components.models.base import AUModel, InputSpec, MultiStepTraining, training_stages
from components.models.registry import (build_model, constructor_record, input_spec, list_models, model_config,
                                        model_info, register_model, rebuild_model, resolve_pretrained)

from components.models import baseline  # noqa: F401,E402  (registers baseline_*)
from components.models import lrp_arl_ff  # noqa: F401,E402  (registers lrp_arl_ff*)
from components.models import pairwise_rank  # noqa: F401,E402  (registers pairwise_rank*)
from components.models import sev_net  # noqa: F401,E402  (registers sev_net*)
from components.models import to_sequence  # noqa: F401,E402  (registers to_sequence*)
from components.models import blendshape  # noqa: F401,E402  (registers blendshape*)

__all__ = ["AUModel", "InputSpec", "MultiStepTraining", "training_stages", "build_model", "constructor_record",
           "input_spec", "list_models", "model_config", "model_info", "register_model", "rebuild_model",
           "resolve_pretrained"]
