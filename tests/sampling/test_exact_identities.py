"""Exact identities between samplers and the exact wording of input errors.

Written to kill surviving mutants of `sampling/` (tests/README.md, mutation check): each
expectation is an identity derived below, checked to float64 round-off.
"""

from __future__ import annotations

import pytest
import torch

from probpath.sampling import SAMPLERS, make_grid, ode_log_prob

from .conftest import make_oracle

F64 = torch.float64


@pytest.mark.parametrize("schedule", ["ddpm", "vp"])
def test_ddim_with_eta_one_is_ancestral_with_beta_tilde(schedule):
    """DDIM with ``eta = 1`` is the ancestral step with variance ``beta_tilde`` (Song et al.
    2021, Sec. 4.1), draw for draw.

    Step ``t -> s``, ``alpha_ts = alpha_t / alpha_s``, ``v = sigma_{t|s}^2 = sigma_t^2 -
    alpha_ts^2 sigma_s^2``. DDIM's noise scale is ``c^2 = v sigma_s^2 / sigma_t^2 = beta_tilde``,
    so ``sigma_s^2 - c^2 = sigma_s^2 (1 - v / sigma_t^2) = alpha_ts^2 sigma_s^4 / sigma_t^2``
    and with ``eps_hat = (x_t - alpha_t x0_hat) / sigma_t`` DDIM's mean
    ``alpha_s x0_hat + (alpha_ts sigma_s^2 / sigma_t) eps_hat`` is
    ``(alpha_ts sigma_s^2 / sigma_t^2) x_t + alpha_s (1 - alpha_ts^2 sigma_s^2 / sigma_t^2) x0_hat``
    ``= (alpha_ts sigma_s^2 / sigma_t^2) x_t + (alpha_s v / sigma_t^2) x0_hat``: the mean of
    ``q(x_s | x_t, x0_hat)``. Same generator, same draws: equal up to float64 round-off
    (1e-10 over 20 steps of O(1) values)."""
    o = make_oracle(schedule)
    x = torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    ts = make_grid(o.path, 20, "uniform")
    a = SAMPLERS["ddim"](o, x, ts, eta=1.0, generator=torch.Generator().manual_seed(3))
    b = SAMPLERS["ancestral"](
        o, x, ts, variance="beta_tilde", generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_lower_order_final_applies_only_below_15_steps():
    """``lower_order_final`` lowers the last steps' order on grids of fewer than 15 steps only
    (Lu et al. 2022b, Sec. 5; module docstring): at 15 steps the option changes nothing, so the
    two runs are the same arithmetic (bitwise equal); at 14 the second-to-last step of 3M is
    second order instead of third, a different update (they differ far above round-off). (2M
    would not show it: its only lowered step is the final jump to ``sigma = 0``, where every
    order returns ``x0_hat``.)"""
    o = make_oracle("vp")
    x = torch.randn(32, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    for steps, same in ((15, True), (14, False)):
        ts = make_grid(o.path, steps, "log_snr")
        on = SAMPLERS["dpmpp_3m"](o, x, ts, lower_order_final=True)
        off = SAMPLERS["dpmpp_3m"](o, x, ts, lower_order_final=False)
        if same:
            torch.testing.assert_close(on, off, rtol=0, atol=0)
        else:
            assert (on - off).abs().max() > 1e-6, steps


def test_input_errors_name_the_argument():
    o = make_oracle("vp")
    with pytest.raises(ValueError, match="spacing must be one of"):
        make_grid(o.path, 10, "cubic")
    x = torch.zeros(2, 2, dtype=F64)
    with pytest.raises(ValueError, match="steps"):
        ode_log_prob(lambda z, t: z, x, lambda z: z.sum(1), method="euler", steps=0)
