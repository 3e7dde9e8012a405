"""Linear inverse problems with diffusion / flow priors (survey §6): operators and solvers.

``y = A x + sigma_y n``: :mod:`~probpath.inverse.operators` (inpainting, super-resolution,
Gaussian blur, denoising, random projection; each with adjoint and pseudo-inverse) and
:mod:`~probpath.inverse.solvers` (DPS, ΠGDM, DDNM / DDNM+ as field transforms on the shared
sampler loop). The exact reference for Gaussian-mixture priors is
:meth:`probpath.paths.oracle.GaussianMixtureOracle.posterior`.
"""

from probpath.inverse.operators import (
    OPERATORS,
    Denoising,
    GaussianBlur,
    Inpainting,
    LinearOperator,
    RandomProjection,
    SuperResolution,
    make_operator,
)
from probpath.inverse.restore import RESTORE_TASKS, Reshaped, restore_file
from probpath.inverse.solvers import (
    SOLVERS,
    DDNMField,
    DPSField,
    PiGDMField,
    ddnm,
    dps,
    pigdm,
    solve,
)

__all__ = [
    "OPERATORS",
    "SOLVERS",
    "DDNMField",
    "DPSField",
    "Denoising",
    "GaussianBlur",
    "Inpainting",
    "LinearOperator",
    "PiGDMField",
    "RESTORE_TASKS",
    "Reshaped",
    "RandomProjection",
    "SuperResolution",
    "ddnm",
    "dps",
    "make_operator",
    "pigdm",
    "restore_file",
    "solve",
]
