"""The main job: train every catalog model on the same data under the same budget, and compare.

Modules: :mod:`~probpath.compare.space` (``DataSpace``), :mod:`~probpath.compare.fitting`
(selection, training, sampling), :mod:`~probpath.compare.evaluation` (NLL and distances),
:mod:`~probpath.compare.table` (rows, Markdown / CSV), :mod:`~probpath.compare.job`
(``run_compare``).

``run_compare`` fits each selected model on one training split (the shared
:class:`~probpath.training.Trainer` for neural models, ``fit`` for estimators), draws samples,
and scores them against held-out data in one common space. It writes ``table.md``,
``table.csv``, ``table.json`` and ``samples.png`` and returns a :class:`CompareResult`.

How data reaches each model (:class:`DataSpace`):

* bounded data (a known ``value_range``, e.g. digits' 0..16 or 8-bit images) is mapped
  affinely to ``[-1, 1]``; unbounded data (the 2-D toys) is left as it is;
* ``data="vector"`` models get image data flattened to ``(N, C*H*W)`` and their samples are
  reshaped back;
* discrete data is dequantised with uniform noise (Trainer: fresh noise every batch;
  estimators: one seeded draw of the training set; evaluation: one seeded draw of the
  held-out set).

Every number in the table is computed in the data's original space, flattened: the NLL
adds the log-Jacobian of the affine map (``D log|scale|``), so it is the density of the
dequantised data in its own units; for discrete data it is reported in bits/dim with the
bin width of one quantisation level (an upper bound on the discrete NLL). MMD uses one
Gaussian kernel whose bandwidth is fixed from the held-out data, so the column compares
models on the same scale.

NFE per sample is what the model reports through the documented hook ``sampling_nfe``
(an ``int`` attribute or property giving network evaluations per sample of its default
sampler); one-step models (``capabilities.one_step``) report 1; otherwise the column says
"—" (unknown; never guessed).
"""

from probpath.compare.evaluation import (
    METRICS,
    HeldOutNLL,
    evaluate_model,
    evaluation_data,
    nll_of,
    sample_metrics,
)
from probpath.compare.fitting import (
    TrainOutcome,
    draw_samples,
    resolve_device,
    sampling_nfe,
    sampling_nfe_text,
    select_entries,
    train_model,
    unfit_reason,
)
from probpath.compare.job import QUICK_TRAIN_BUDGET, run_compare, samples_grid
from probpath.compare.seeds import run_compare_seeds
from probpath.compare.space import DataSpace
from probpath.compare.table import CompareResult, CompareRow, format_markdown

__all__ = [
    "DataSpace",
    "TrainOutcome",
    "HeldOutNLL",
    "CompareRow",
    "CompareResult",
    "QUICK_TRAIN_BUDGET",
    "METRICS",
    "resolve_device",
    "select_entries",
    "train_model",
    "unfit_reason",
    "draw_samples",
    "sampling_nfe",
    "sampling_nfe_text",
    "nll_of",
    "sample_metrics",
    "evaluate_model",
    "evaluation_data",
    "run_compare",
    "run_compare_seeds",
    "format_markdown",
    "samples_grid",
]
