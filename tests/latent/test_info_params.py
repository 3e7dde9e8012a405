"""``num_parameters`` and what ``probpath info`` shows of the latent models and of DiT."""

from __future__ import annotations

import pytest
import torch

from probpath.cli.info_text import INFO_TEXT
from probpath.core.model import num_parameters
from probpath.likelihood.gaussian import GaussianMLE
from probpath.nn import DiT


def test_num_parameters_counts_weights_and_fitted_arrays():
    """``Linear(3, 2)``: 3 x 2 weights + 2 biases = 8; frozen layers drop out only with
    ``trainable_only``; a fitted full-covariance Gaussian in 3-D holds its fitted arrays'
    elements (counted independently from ``fitted_state``)."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    net[1].requires_grad_(False)
    assert num_parameters(net) == 8 + 3
    assert num_parameters(net, trainable_only=True) == 8
    est = GaussianMLE().fit(torch.randn(20, 3, dtype=torch.float64))
    arrays = [v for v in vars(est).values() if isinstance(v, torch.Tensor)]
    assert num_parameters(est) == sum(a.numel() for a in arrays) > 3
    with pytest.raises(TypeError, match="network or an Estimator"):
        num_parameters("ddpm")


def test_info_lists_the_latent_models_and_the_dit_count():
    dit = DiT((1, 8, 8))
    assert dit.num_parameters == num_parameters(dit)
    assert f"{num_parameters(dit):,} parameters" in INFO_TEXT
    lines = {line.split()[0]: line for line in INFO_TEXT.splitlines() if line.startswith("  ")}
    for name in ("ldm", "latent-cfm"):
        assert "bound" in lines[name] and "image" in lines[name]
