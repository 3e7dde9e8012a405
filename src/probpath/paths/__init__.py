"""Probability paths: schedules, the affine path, the prediction hub, fields and the oracle.

The survey's unifying object (§2.4, §2.5, §3.3): ``x_t = alpha(t) x0 + sigma(t) eps`` with
t = 0 data and t = 1 noise; diffusion, score SDEs and flow matching all live on it.
"""

from probpath.paths.affine import AffinePath, PathSample
from probpath.paths.field import (
    ClippedField,
    CountingField,
    Field,
    FunctionField,
    PathField,
    count_nfe,
)
from probpath.paths.oracle import GaussianMixtureOracle
from probpath.paths.parameterization import Prediction, convert, from_x0_eps, to_x0_eps
from probpath.paths.schedules import (
    SCHEDULES,
    DDPMSchedule,
    EDMSchedule,
    LinearSchedule,
    Schedule,
    ScheduleValues,
    SubVPSchedule,
    VESchedule,
    VPSchedule,
    make_schedule,
)

__all__ = [
    "AffinePath",
    "PathSample",
    "Schedule",
    "ScheduleValues",
    "DDPMSchedule",
    "VPSchedule",
    "SubVPSchedule",
    "VESchedule",
    "LinearSchedule",
    "EDMSchedule",
    "SCHEDULES",
    "make_schedule",
    "Prediction",
    "to_x0_eps",
    "from_x0_eps",
    "convert",
    "Field",
    "PathField",
    "FunctionField",
    "ClippedField",
    "CountingField",
    "count_nfe",
    "GaussianMixtureOracle",
]
