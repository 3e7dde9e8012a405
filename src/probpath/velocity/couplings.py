"""Couplings of data and noise for conditional flow matching (survey §3.3, Eq. 62).

A coupling ``pi(x0, eps)`` decides which noise sample each data point is paired with before
the conditional path ``x_t = alpha_t x0 + sigma_t eps`` is drawn. The independent coupling is
plain CFM (Lipman et al. 2023); the exact minibatch optimal-transport coupling is OT-CFM
(Tong et al. 2024; Pooladian et al. 2023), which straightens the learned paths.

Every coupling has one signature: ``coupling(x0, eps, generator=None) -> (x0, eps)`` with the
second batch permuted (or resampled) to follow the coupling.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from probpath.core.validation import check_choice

__all__ = [
    "independent_coupling",
    "ot_coupling",
    "ot_plan",
    "COUPLINGS",
    "get_coupling",
    "within_classes",
]


def independent_coupling(
    x0: torch.Tensor, eps: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``pi = q(x0) p(eps)``: the pairs as drawn (both batches are already independent)."""
    return x0, eps


def _cost(x0: torch.Tensor, eps: torch.Tensor) -> np.ndarray:
    a = x0.detach().reshape(x0.shape[0], -1).to(torch.float64)
    b = eps.detach().reshape(eps.shape[0], -1).to(torch.float64)
    return torch.cdist(a, b).pow_(2).cpu().numpy()


def ot_plan(x0: torch.Tensor, eps: torch.Tensor, solver: str = "assignment") -> np.ndarray:
    """The exact OT plan between the two empirical measures, squared Euclidean cost.

    Args:
        x0: ``(n, *event)``.
        eps: ``(m, *event)``.
        solver: ``"assignment"`` (equal sizes only: with uniform weights the optimal plan is a
            permutation, a vertex of the Birkhoff polytope, found by the Hungarian-type solver
            ``scipy.optimize.linear_sum_assignment``) or ``"emd"`` (POT's network simplex,
            any sizes).

    Returns:
        ``(n, m)`` plan with row sums ``1/n`` and column sums ``1/m`` (float64 NumPy).
    """
    check_choice(solver, "solver", ("assignment", "emd"))
    cost = _cost(x0, eps)
    n, m = cost.shape
    if solver == "assignment":
        if n != m:
            raise ValueError(f"solver='assignment' needs equal batch sizes, got {n} and {m}")
        rows, cols = linear_sum_assignment(cost)
        plan = np.zeros((n, m))
        plan[rows, cols] = 1.0 / n
        return plan
    import ot  # POT, a core dependency; imported lazily because it is slow to import

    return ot.emd(np.full(n, 1.0 / n), np.full(m, 1.0 / m), cost)


def ot_coupling(
    x0: torch.Tensor,
    eps: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    solver: str = "assignment",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact minibatch OT coupling (OT-CFM): pair ``x0`` and ``eps`` by the optimal plan.

    With equal batch sizes the plan is a permutation, so every noise sample is used exactly
    once (``eps`` is reordered). With ``solver="emd"`` and unequal sizes, ``len(x0)`` pairs are
    drawn from the plan with ``generator``.

    Args:
        x0: data ``(n, *event)``.
        eps: noise ``(m, *event)``.
        generator: used only when pairs are drawn from a non-permutation plan.
        solver: see :func:`ot_plan`.

    Returns:
        ``(x0, eps)`` of shapes ``(n, *event)``, paired.

    >>> x0 = torch.tensor([[0.0], [10.0]])
    >>> eps = torch.tensor([[9.0], [1.0]])
    >>> ot_coupling(x0, eps)[1].flatten().tolist()
    [1.0, 9.0]
    """
    if solver == "assignment" and x0.shape[0] == eps.shape[0]:
        _, cols = linear_sum_assignment(_cost(x0, eps))
        return x0, eps[torch.as_tensor(cols, device=eps.device)]
    plan = torch.as_tensor(ot_plan(x0, eps, solver))
    n, m = plan.shape
    if n == m and torch.all((plan > 0).sum(1) == 1):  # a permutation: use it
        return x0, eps[plan.argmax(1).to(eps.device)]
    flat = torch.multinomial(plan.reshape(-1), n, replacement=True, generator=generator)
    i, j = flat // m, flat % m
    return x0[i.to(x0.device)], eps[j.to(eps.device)]


def within_classes(coupling, labels: torch.Tensor):
    """``coupling`` applied separately to each class of ``labels`` ``(batch,)``.

    A class-conditional model learns one transport per class, from ``N(0, I)`` to
    ``p(x | c)``; the minibatch OT plan of the whole batch would pair a point with noise
    chosen for the geometry of other classes. Pairing within each class is the minibatch OT
    plan of every ``p(x | c)``. Positions of each class are kept, so the labels stay aligned
    with the returned ``x0``.

    >>> x0 = torch.tensor([[0.0], [10.0], [1.0]])
    >>> eps = torch.tensor([[9.0], [1.0], [8.0]])
    >>> within_classes(ot_coupling, torch.tensor([0, 1, 0]))(x0, eps)[1].flatten().tolist()
    [8.0, 1.0, 9.0]
    """

    def coupled(x0, eps, generator=None):
        x0, eps = x0.clone(), eps.clone()
        for c in torch.unique(labels):
            idx = (labels == c).nonzero().squeeze(1)
            x0[idx], eps[idx] = coupling(x0[idx], eps[idx], generator)
        return x0, eps

    return coupled


COUPLINGS = {"independent": independent_coupling, "ot": ot_coupling}


def get_coupling(name: str):
    """The coupling function called ``name`` (``"independent"`` or ``"ot"``)."""
    check_choice(name, "coupling", tuple(COUPLINGS))
    return COUPLINGS[name]
