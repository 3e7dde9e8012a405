"""Samplers shared by diffusion, score SDEs and flow matching, time grids, ODE likelihood.

Every sampler is a step function plus a :class:`SamplerSpec` in the registry
:data:`SAMPLER_SPECS`; :func:`run_sampler` is the one loop, ``sample_<name>(field, x_init, ts,
*, generator=None, callback=None, cond=None, **options) -> Tensor`` (:data:`SAMPLERS`) binds it
to a spec, and :func:`sample_path` is what models call.
"""

from probpath.sampling.likelihood import (
    LikelihoodResult,
    divergence,
    field_log_prob,
    ode_log_prob,
)
from probpath.sampling.loop import SamplerSpec, StepContext, run_sampler
from probpath.sampling.multistep import (
    sample_deis,
    sample_dpmpp_2m,
    sample_dpmpp_3m,
    sample_unipc,
)
from probpath.sampling.ode import (
    sample_adaptive,
    sample_dpm_solver_1,
    sample_dpm_solver_2,
    sample_dpm_solver_3,
    sample_euler,
    sample_heun,
    sample_rk4,
)
from probpath.sampling.samplers import (
    DEFAULT_SPACING,
    SAMPLER_SPECS,
    SAMPLERS,
    SampleOutput,
    get_sampler,
    sample_path,
)
from probpath.sampling.sde import (
    sample_ancestral,
    sample_annealed_langevin,
    sample_ddim,
    sample_edm_heun,
    sample_euler_maruyama,
    sample_interpolant_sde,
    sample_langevin,
    sample_pc,
)
from probpath.sampling.timesteps import SPACINGS, GridValues, check_grid, make_grid

__all__ = [
    "SAMPLER_SPECS",
    "SamplerSpec",
    "StepContext",
    "get_sampler",
    "run_sampler",
    "SAMPLERS",
    "DEFAULT_SPACING",
    "SampleOutput",
    "sample_path",
    "LikelihoodResult",
    "ode_log_prob",
    "field_log_prob",
    "divergence",
    "SPACINGS",
    "GridValues",
    "make_grid",
    "check_grid",
    "sample_euler",
    "sample_heun",
    "sample_rk4",
    "sample_adaptive",
    "sample_dpm_solver_1",
    "sample_dpm_solver_2",
    "sample_dpm_solver_3",
    "sample_dpmpp_2m",
    "sample_dpmpp_3m",
    "sample_unipc",
    "sample_deis",
    "sample_ancestral",
    "sample_annealed_langevin",
    "sample_ddim",
    "sample_edm_heun",
    "sample_euler_maruyama",
    "sample_interpolant_sde",
    "sample_langevin",
    "sample_pc",
]
