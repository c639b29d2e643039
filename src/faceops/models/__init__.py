"""Networks for faceops: one registry and one factory (``create_model``) for every model.

Importing this package registers every built-in entrypoint; a new model file only needs its
``@register_model`` functions and an import line below.
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
