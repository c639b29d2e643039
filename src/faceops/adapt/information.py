"""The batch estimate of the mutual information between target images and their predicted pseudo-identities.

AIN (Wang and Deng, IEEE TIP 2022, arXiv 2305.13605) trains the target classifier to *minimise* and the
feature extractor to *maximise* this quantity. With ``p_i`` the classifier's posterior of row ``i`` over
``K`` classes and ``p_mean`` their batch mean:

    I = H(p_mean) - mean_i H(p_i),   H(q) = -sum_k q_k log q_k

``H(p_mean)`` is high when the batch is spread over many classes, ``mean_i H(p_i)`` low when each row is
confidently assigned, so a high ``I`` means "confident and balanced". ``0 <= I <= log K`` (Jensen: entropy
is concave, so ``H(mean p) >= mean H(p)``; and ``H <= log K``). The formula and the equal weighting of the
two entropies are our reconstruction: AIN has no public code and only its abstract was available to us.
"""

from __future__ import annotations

import torch

__all__ = ["entropy", "mutual_information"]


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats of each row of ``probs`` [..., K] -> [...]; ``0 log 0`` counts as 0."""
    return -(probs * torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))).sum(dim=-1)


def mutual_information(probs: torch.Tensor) -> torch.Tensor:
    """``H(mean p) - mean H(p)`` of a batch of posteriors.

    Args:
        probs: rows of class probabilities [N, K] (each row sums to 1; a softmax output).

    Returns:
        A scalar in ``[0, log K]`` (up to float rounding): 0 when every row is the same distribution,
        ``log K`` for one-hot rows spread evenly over the K classes.

    Raises:
        ValueError: ``probs`` is not [N, K] with N >= 1.
    """
    if probs.dim() != 2 or probs.shape[0] < 1:
        raise ValueError(f"mutual_information needs posteriors [N, K] with N >= 1, got shape {tuple(probs.shape)}")
    return entropy(probs.mean(dim=0)) - entropy(probs).mean()
