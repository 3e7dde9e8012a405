"""The Gaussian-mixture oracle on the linear path: the exact teacher of the few-step tests."""

from __future__ import annotations

import pytest

from probpath.paths import AffinePath, GaussianMixtureOracle


@pytest.fixture
def oracle():
    """Two anisotropic components in 2-D (means +-1 apart, standard deviations 0.22-0.45)."""
    return GaussianMixtureOracle(
        [0.5, 0.5], [[-1.0, 0.0], [1.0, 0.5]], [[0.1, 0.1], [0.05, 0.2]], path=AffinePath("linear")
    )


@pytest.fixture
def exact_u():
    """The exact average velocity of a field's ODE, :func:`exact_average_velocity`."""
    return exact_average_velocity


def exact_average_velocity(field, z, r, t, n_steps: int = 64):
    """``u(z, r, t) = (z - x_r) / (t - r)`` with ``x_r`` the ODE solution from ``(z, t)``: RK4
    with ``n_steps`` steps in ``s`` (``tau = t + s (r - t)``), written with differentiable torch
    ops so that ``torch.func.jvp`` can run through it (error ``O((t - r)^4 / n_steps^4)``)."""
    h = 1.0 / n_steps
    x = z
    span = (r - t)[:, None]

    def rhs(x, s):
        return span * field.velocity(x, t + s * (r - t))

    for i in range(n_steps):
        s = i * h
        k1 = rhs(x, s)
        k2 = rhs(x + 0.5 * h * k1, s + 0.5 * h)
        k3 = rhs(x + 0.5 * h * k2, s + 0.5 * h)
        k4 = rhs(x + h * k3, s + h)
        x = x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return (z - x) / (t - r)[:, None]
