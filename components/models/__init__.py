"""AU models: one file per family, each registering its variants by name.

Adding a model is one new file plus its import here.
"""

from components.models.base import AUModel, InputSpec
from components.models.registry import build_model, list_models, model_info, register_model

from components.models import baseline  # noqa: F401  (registers baseline_*)

__all__ = ["AUModel", "InputSpec", "build_model", "list_models", "model_info", "register_model"]
from components.models import lrp_arl_ff  # noqa: F401,E402  (registers lrp_arl_ff*)
from components.models import sev_net  # noqa: F401,E402  (registers sev_net*)
from components.models import to_sequence  # noqa: F401,E402  (registers to_sequence*)
from components.models import pairwise_rank  # noqa: F401,E402  (registers pairwise_rank*)
from components.models import blendshape  # noqa: F401,E402  (registers blendshape*)
