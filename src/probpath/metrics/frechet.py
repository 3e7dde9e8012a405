"""Fréchet distance between Gaussian fits of two samples (the FID formula, survey §5)."""

from __future__ import annotations

import torch

from probpath.metrics._common import flatten_pair

__all__ = ["frechet_distance", "frechet_distance_gaussian"]


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    evals, evecs = torch.linalg.eigh(a)
    return (evecs * evals.clamp_min(0).sqrt()) @ evecs.T


def frechet_distance_gaussian(mu1, cov1, mu2, cov2) -> float:
    """``|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^{1/2} C2 C1^{1/2})^{1/2})``: the squared
    2-Wasserstein distance between ``N(mu1, C1)`` and ``N(mu2, C2)``.

    Computed through eigendecompositions of symmetric matrices (no ``sqrtm`` of a
    non-symmetric product): ``tr (C1 C2)^{1/2} = sum sqrt(eig(C1^{1/2} C2 C1^{1/2}))``.
    Tiny negative results from round-off are clamped to 0.

    Args:
        mu1, mu2: ``(D,)`` means.
        cov1, cov2: ``(D, D)`` positive semi-definite covariances.

    Returns:
        A Python float.
    """
    mu1, mu2 = (torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in (mu1, mu2))
    c1, c2 = (torch.as_tensor(c, dtype=torch.float64) for c in (cov1, cov2))
    d = mu1.numel()
    if mu2.numel() != d or c1.shape != (d, d) or c2.shape != (d, d):
        raise ValueError(
            f"shapes do not match: mu1 {tuple(mu1.shape)}, mu2 {tuple(mu2.shape)}, "
            f"cov1 {tuple(c1.shape)}, cov2 {tuple(c2.shape)}; expected (D,) and (D, D)"
        )
    c1, c2 = (c1 + c1.T) / 2, (c2 + c2.T) / 2
    s1 = _sqrtm_psd(c1)
    cross = torch.linalg.eigvalsh(s1 @ c2 @ s1).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + torch.trace(c1) + torch.trace(c2) - 2 * cross
    return max(float(value), 0.0)


def frechet_distance(x, y) -> float:
    """Fréchet distance between Gaussians fitted to ``x`` and ``y`` (sample mean and
    unbiased covariance), on the raw flattened values (no feature network: FID would apply
    the same formula to Inception features).

    Args:
        x: ``(m, *event)`` samples (``m >= 2``), flattened to ``(m, D)``.
        y: ``(n, *event)`` samples (``n >= 2``).

    Returns:
        A Python float (squared distance, as FID reports it).
    """
    x, y = flatten_pair(x, y, min_n=2)
    return frechet_distance_gaussian(
        x.mean(0),
        torch.cov(x.T).reshape(x.shape[1], -1),
        y.mean(0),
        torch.cov(y.T).reshape(y.shape[1], -1),
    )
