"""Universal adversarial perturbations against the trained model (section ``robustness``, stage ``robustness``).

SGA (Liu et al., ICCV 2023, arXiv 2308.06015) vs SPGD vs random noise; ``faceops.robust``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from faceops.config import SOURCE_NAME_PATTERN
from faceops.config.core import Section

__all__ = ["RobustnessParams"]


class RobustnessParams(Section):
    """SGA vs SPGD vs random sign noise against the trained model's classifiers (stage ``robustness``).

    The defaults are SGA's released settings (eps 10/255, step eps/10, B 250, b 10, K 4 -> 100 inner steps
    per outer step, 20 epochs, beta 9); the demo ships a tiny configuration. ``targets``: classification
    outputs of the model (``Expression``, ``Male``, ...) and/or ``identity`` (nearest class centre of the
    embedding, centres from the clean images). ``max_images`` of each source's ``split`` (in id order) are
    used; ``held_out_share`` of them measure the fooling rate, the rest learn the perturbation.
    ``momentum`` 0 is plain SGA; 0.9 is the released code's momentum option.
    """

    sources: list[Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)]] = Field(default_factory=lambda: ["sample"])
    split: Literal["train", "val", "test", "unlabeled"] = "test"
    targets: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=lambda: ["Expression", "identity"])
    max_images: Annotated[int, Field(ge=4, le=1_000_000)] = 20_000
    held_out_share: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    eps: Annotated[float, Field(gt=0.0, le=1.0)] = 10 / 255
    step_decay: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 250
    minibatch_size: Annotated[int, Field(ge=1, le=100_000)] = 10
    inner_iters: Annotated[int, Field(ge=1, le=1000)] = 4
    epochs: Annotated[int, Field(ge=1, le=1000)] = 20
    beta: Annotated[float, Field(gt=0.0)] = 9.0
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    eval_batch_size: Annotated[int, Field(ge=1, le=4096)] = 64

    @model_validator(mode="after")
    def _minibatch_fits(self) -> RobustnessParams:
        if self.minibatch_size > self.batch_size:
            raise ValueError(f"robustness.minibatch_size ({self.minibatch_size}) must be <= robustness.batch_size "
                             f"({self.batch_size}): inner steps draw from one outer batch")  # fmt: skip
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"robustness.targets lists a name twice: {self.targets}")
        return self
