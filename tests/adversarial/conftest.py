"""Helpers shared by the adversarial-model tests."""

from __future__ import annotations

import torch


def moment_error(s: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> float:
    """``|mean(s) - mean| + ||cov(s) - cov||_F`` for ``s`` of shape ``(n, d)``: a norm on
    (mean, covariance) pairs, so the triangle inequality bounds it against any other pair."""
    return float((s.mean(0) - mean).norm() + torch.linalg.matrix_norm(torch.cov(s.T) - cov))
