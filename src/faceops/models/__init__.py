"""Networks for faceops: one registry and one factory (``create_model``) for every model.

Importing this package registers the face networks (swinface_*, fiwhn_*); a new face model file only needs its
``@register_model`` functions and an import line below. The structure pipeline's networks (cornerformer_*) register
when ``faceops.structure.model`` is imported, as its stages do: importing them here would put structure code among
every face stage's code dependencies, so a structure edit would re-run the face pipeline.
"""

from faceops.models._registry import (
    TIMM_PREFIX,
    create_model,
    current_model_name,
    list_models,
    register_former_name,
    register_model,
)
from faceops.models.optim import param_groups

from faceops.models import fiwhn  # noqa: F401  (registers the fiwhn_x* entrypoints)
from faceops.models import swinface  # noqa: F401  (registers the swinface_* entrypoints)

__all__ = [
    "register_model",
    "register_former_name",
    "create_model",
    "current_model_name",
    "list_models",
    "param_groups",
    "TIMM_PREFIX",
]
