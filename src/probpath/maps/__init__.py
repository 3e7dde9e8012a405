"""Few-step generation (survey §3.3): models that learn maps of the probability-flow ODE.

Consistency models (distillation and training), MeanFlow, shortcut models and progressive
distillation; each is a :class:`~probpath.maps.base.MapModel` whose 1-step sample is one
network call. Teachers are fields (:func:`load_teacher` reads a run directory).
"""

from probpath.maps.base import MapModel, flow_map, load_teacher, teacher_solve
from probpath.maps.consistency import ConsistencyModel
from probpath.maps.meanflow import MeanFlow
from probpath.maps.progressive import ProgressiveDistillation
from probpath.maps.shortcut import ShortcutModel

__all__ = [
    "MapModel",
    "ConsistencyModel",
    "MeanFlow",
    "ShortcutModel",
    "ProgressiveDistillation",
    "load_teacher",
    "flow_map",
    "teacher_solve",
]
