"""Exact identities of the few-step targets, checked with the Gaussian-mixture oracle.

Each training target is a function of the network; plugging in the *exact* map of the
oracle's probability-flow ODE must reproduce that map (up to the quadrature error stated at
each assertion), and the boundary parameterisation must hold to the last bit.
"""

from __future__ import annotations

import torch

from probpath.maps import ConsistencyModel, flow_map
from probpath.maps.consistency import boundary_coefficients, curriculum_steps_at
from probpath.maps.meanflow import meanflow_target
from probpath.maps.progressive import distillation_target
from probpath.maps.shortcut import shortcut_target
from probpath.paths import AffinePath, GaussianMixtureOracle


def _points(oracle, n, gen, t_lo=0.3, t_hi=0.9):
    """Points on the path: ``x_t`` of oracle samples at random ``t`` in ``[t_lo, t_hi]``."""
    t = t_lo + (t_hi - t_lo) * torch.rand(n, generator=gen, dtype=torch.float64)
    x0 = oracle.sample(n, generator=gen)
    eps = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return (1 - t)[:, None] * x0 + t[:, None] * eps, t


def test_flow_map_of_a_single_gaussian_is_the_closed_form():
    """For ``x0 ~ N(mu, S)`` with diagonal ``S`` on the linear path, ``x_t`` has covariance
    ``C_t = (1 - t)^2 S + t^2 I`` (diagonal, commuting), so the ODE map from noise is linear:
    ``x_0 = mu + S^(1/2) x_1``. The tight adaptive solve must match to ~its tolerance (1e-8;
    measured 3e-8) plus the ``1e-7`` stop above ``t = 0``; bound 1e-5."""
    mu, var = torch.tensor([0.5, -1.0]), torch.tensor([0.3, 2.0])
    o = GaussianMixtureOracle([1.0], [mu.tolist()], [var.tolist()], path=AffinePath("linear"))
    x1 = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = mu.double() + var.double().sqrt() * x1
    torch.testing.assert_close(flow_map(o, x1, 1.0, 0.0), exact, atol=1e-5, rtol=0)


def test_consistency_boundary_condition_is_exact():
    """``f(x, t_min) = x`` bit for bit (``c_skip = 1``, ``c_out = 0``), on the linear path
    (``t_min = 0``) and the VP path (``t_min = 1e-3``), for an untrained network, read as the
    free ``F`` or as a prediction of the conversion hub."""
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    for schedule in ("linear", "vp"):
        for prediction in (None, "velocity", "eps", "v"):  # the free F, or a hub prediction
            m = ConsistencyModel(
                (2,), "training", schedule=schedule, network={"hidden": [8]}, prediction=prediction
            )
            t = torch.full((16,), m.path.t_min)
            assert torch.equal(m.consistency(x, t), x)
        c_skip, c_out = boundary_coefficients(m.path, torch.tensor([0.5, 1.0]), 0.5, m.path.t_min)
        assert torch.isfinite(c_skip).all() and torch.isfinite(c_out).all()


def test_boundary_coefficients_at_pure_noise():
    """Linear path at ``t = 1``: ``alpha = 0``, so ``c_skip = 0`` and ``c_out = s_d``."""
    c_skip, c_out = boundary_coefficients(AffinePath("linear"), torch.ones(1), 0.5, 0.0)
    assert float(c_skip) == 0.0 and float(c_out) == 0.5


def test_curriculum_doubles_from_n_min_to_n_max():
    """``N(k) = min(10 * 2^floor(k / K'), 160)``, ``K' = floor(5000 / 5) = 1000``."""
    got = [curriculum_steps_at(k, 5000, 10, 160) for k in (0, 999, 1000, 2500, 4000, 10**6)]
    assert got == [10, 10, 20, 40, 160, 160]


def test_meanflow_target_of_the_exact_average_velocity_is_itself(oracle, exact_u):
    """MeanFlow identity: with ``u`` the exact average velocity of the oracle's ODE and ``v``
    its exact velocity, ``v - (t - r) (v . grad u + d_t u) = u``. ``u`` comes from RK4 with 32
    steps (measured error 3e-6 on such points, shrinking 16x per doubling of the steps, i.e.
    fourth order); bound 2e-5."""
    gen = torch.Generator().manual_seed(0)
    z, t = _points(oracle, 16, gen)
    r = t * torch.rand(16, generator=gen, dtype=torch.float64)
    v = oracle.velocity(z, t)

    def u_fn(z, r, t):
        return exact_u(oracle, z, r, t, 32)

    u, target = meanflow_target(u_fn, z, r, t, v)
    torch.testing.assert_close(target, u, atol=2e-5, rtol=0)
    # a wrong u (the instantaneous velocity as an average) violates the identity visibly
    _, wrong = meanflow_target(lambda z, r, t: oracle.velocity(z, t), z, r, t, v)
    assert (wrong - u).abs().max() > 1e-2


def test_meanflow_average_velocity_on_the_diagonal_is_the_velocity(oracle, exact_u):
    """``u(x, t, t) = v(x, t)``: the target at ``r = t`` is ``v`` exactly, and the exact
    average over ``[t - h, t]`` differs from ``v`` by ``O(h)`` (``h = 1e-4``; bound 1e-3)."""
    gen = torch.Generator().manual_seed(1)
    z, t = _points(oracle, 16, gen)
    v = oracle.velocity(z, t)
    _, target = meanflow_target(lambda z, r, t: oracle.velocity(z, t), z, t, t, v)
    assert torch.equal(target, v)
    u = exact_u(oracle, z, t - 1e-4, t, 4)
    torch.testing.assert_close(u, v, atol=1e-3, rtol=0)


def test_shortcut_target_of_the_exact_map_is_the_exact_double_step(oracle, exact_u):
    """The exact shortcut is the average velocity ``s(x, t, d) = u(x, t - d, t)``; two exact
    jumps of ``d`` are one exact jump of ``2d``, so the self-consistency target built from the
    exact ``s`` equals ``s(x, t, 2d)`` up to the RK4 error (64 steps: < 1e-6; bound 1e-5)."""
    gen = torch.Generator().manual_seed(2)
    z, t = _points(oracle, 32, gen, 0.5, 1.0)
    d = torch.full((32,), 0.25, dtype=torch.float64)

    def slope(x, t, d):
        return exact_u(oracle, x, t - d, t, 64)

    torch.testing.assert_close(
        shortcut_target(slope, z, t, d), slope(z, t, 2 * d), atol=1e-5, rtol=0
    )


def test_progressive_target_turns_two_teacher_steps_into_one_student_step(oracle):
    """If the student's ``x0_hat`` is ``x_tilde``, its one DDIM step from ``t`` to ``t''``
    lands exactly where the teacher's two DDIM steps did (an algebraic identity; bound 1e-12
    for float64 round-off), including the last step to ``sigma = 0``."""
    from probpath.maps import teacher_solve

    path = AffinePath("ddpm")
    o = GaussianMixtureOracle(oracle.weights, oracle.means, oracle.covs, path=path)
    gen = torch.Generator().manual_seed(3)
    n, steps = 64, 4
    i = torch.randint(1, steps + 1, (n,), generator=gen).double()
    t, t_mid, t_next = i / steps, (i - 0.5) / steps, (i - 1) / steps
    z = path.sample(o.sample(n, generator=gen), t, generator=gen).x_t
    z_next = teacher_solve(o, z, torch.stack([t, t_mid, t_next], 1), sampler="ddim")
    x_tilde = distillation_target(path, z, t, z_next, t_next)
    v, w = path(t), path(t_next)
    eps_tilde = (z - v.alpha[:, None] * x_tilde) / v.sigma[:, None]
    student = w.alpha[:, None] * x_tilde + w.sigma[:, None] * eps_tilde
    torch.testing.assert_close(student, z_next, atol=1e-12, rtol=0)


def test_teacher_solve_matches_the_shared_sampler_per_grid(oracle):
    """Per-row Heun steps equal ``sample_path(..., sampler="heun")`` on each row's grid (the
    same arithmetic; bound 1e-12), and a grouped sampler gives the same result too."""
    from probpath.maps import teacher_solve
    from probpath.sampling import sample_path

    gen = torch.Generator().manual_seed(4)
    x = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    times = torch.tensor([[1.0, 0.5]] * 3 + [[0.5, 0.25]] * 3, dtype=torch.float64)
    got = teacher_solve(oracle, x, times, sampler="heun")
    grouped = teacher_solve(oracle, x, times, sampler="rk4")
    for rows, grid in ((slice(0, 3), [1.0, 0.5]), (slice(3, 6), [0.5, 0.25])):
        ref = sample_path(oracle, x[rows].shape, sampler="heun", grid=grid, x_init=x[rows]).x
        torch.testing.assert_close(got[rows], ref, atol=1e-12, rtol=0)
        ref4 = sample_path(oracle, x[rows].shape, sampler="rk4", grid=grid, x_init=x[rows]).x
        torch.testing.assert_close(grouped[rows], ref4, atol=1e-12, rtol=0)
