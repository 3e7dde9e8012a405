"""The conditional flow-matching objective (survey §3.3, Eq. 61-64).

On the affine path ``x_t = alpha_t x0 + sigma_t eps`` (a Gaussian conditional path, Eq. 63-64)
the conditional velocity is ``u_t(x_t | x0, eps) = d_alpha x0 + d_sigma eps``, and CFM
regresses the field's velocity on it (Eq. 62); FM and CFM have the same gradient.

Time: probpath's ``t = 0`` is data and ``t = 1`` noise. The flow-matching papers run
``tau = 1 - t`` (``tau = 1`` data), so their velocity is minus ours; the linear schedule
``alpha = 1 - t, sigma = sigma_min + (1 - sigma_min) t`` is Lipman et al.'s OT path.
"""

from __future__ import annotations

import torch

from probpath.core.validation import check_choice
from probpath.paths.field import Field
from probpath.paths.parameterization import Prediction
from probpath.velocity.couplings import independent_coupling

__all__ = ["cfm_loss"]


def cfm_loss(
    field: Field,
    x0: torch.Tensor,
    t: torch.Tensor,
    *,
    eps: torch.Tensor | None = None,
    coupling=independent_coupling,
    cond: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Conditional flow matching, Eq. (62): ``||v_theta(x_t, t) - u_t(x_t | x0, eps)||^2``.

    Args:
        field: the model's field (any native prediction; read as a velocity).
        x0: data ``(batch, *event)``.
        t: times ``(batch,)``.
        eps: the source (noise) samples; drawn from ``N(0, I)`` with ``generator`` if ``None``.
            Rectified flow's reflow passes the noise its previous model paired with ``x0``.
        coupling: ``coupling(x0, eps, generator) -> (x0, eps)``, e.g.
            :func:`~probpath.velocity.couplings.ot_coupling` for OT-CFM.
        cond: labels for conditional fields (aligned with ``x0``).
        reduction: ``"mean"`` or ``"sum"`` over event dimensions.

    Returns:
        ``(batch,)``.
    """
    check_choice(reduction, "reduction", ("sum", "mean"))
    if eps is None:
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    x0, eps = coupling(x0, eps, generator)
    ps = field.path.sample(x0, t, eps=eps)
    err = (field.predict(ps.x_t, t, as_=Prediction.VELOCITY, cond=cond) - ps.velocity) ** 2
    err = err.reshape(err.shape[0], -1)
    return err.mean(1) if reduction == "mean" else err.sum(1)
