"""Finite mixtures fitted by EM (Survey §1.1.2, Eqs. 8–11): the public names in one place.

The code lives by algorithm: :mod:`probpath.likelihood.mixture_em` (the family-independent
EM base :class:`MixtureEM`), :mod:`probpath.likelihood._stepwise` (stepwise EM),
:mod:`probpath.likelihood.gaussian_mixture` (:class:`GaussianMixture`),
:mod:`probpath.likelihood.covariance` (the covariance types, shared with the variational
mixture) and :mod:`probpath.likelihood._mixture_tools` (initialisation helpers).
"""

from probpath.likelihood._mixture_tools import (
    INIT_PARAMS,
    check_array_parameter,
    initial_responsibilities,
    responsibility_sums,
)
from probpath.likelihood.gaussian_mixture import GaussianMixture
from probpath.likelihood.mixture_em import MixtureEM

__all__ = [
    "MixtureEM",
    "GaussianMixture",
    "INIT_PARAMS",
    "check_array_parameter",
    "initial_responsibilities",
    "responsibility_sums",
]
