"""Few-step generation (survey §3.3): models that learn maps of the probability-flow ODE.

Consistency models (distillation and training), consistency flow matching, MeanFlow,
shortcut models, progressive distillation and one-step distillation of a rectified flow.
Each is a :class:`~probpath.maps.base.MapModel` whose 1-step sample is one network call;
teachers are fields (:func:`load_teacher` reads a run directory).
"""

from probpath.maps.base import MapModel, flow_map, load_teacher, teacher_solve
from probpath.maps.consistency import ConsistencyModel
from probpath.maps.consistency_fm import ConsistencyFlowMatching
from probpath.maps.meanflow import MeanFlow
from probpath.maps.progressive import ProgressiveDistillation
from probpath.maps.rectified import RectifiedDistillation
from probpath.maps.shortcut import ShortcutModel

__all__ = [
    "MapModel",
    "ConsistencyModel",
    "MeanFlow",
    "ShortcutModel",
    "ProgressiveDistillation",
    "ConsistencyFlowMatching",
    "RectifiedDistillation",
    "load_teacher",
    "flow_map",
    "teacher_solve",
]
