"""``probpath survey``: the survey's Tables 1–4 regenerated at CPU scale.

Modules: :mod:`~probpath.survey.specs` (the tables as data: rows, columns, budgets),
:mod:`~probpath.survey.columns` (headers, units, arrows), :mod:`~probpath.survey.runner`
(running rows through :mod:`probpath.compare`), :mod:`~probpath.survey.disentanglement` (the
Factor-CLS protocol), :mod:`~probpath.survey.render` (Markdown / HTML),
:mod:`~probpath.survey.job` (:func:`run_survey`). The protocol is in ``docs/protocol.md``.
"""

from probpath.survey.columns import COLUMNS, Column
from probpath.survey.job import merge_outputs, parse_seeds, parse_tables, run_survey, write_outputs
from probpath.survey.specs import BUDGETS, TABLES, Budget, RowSpec, TableSpec, budget_from

__all__ = [
    "BUDGETS",
    "COLUMNS",
    "TABLES",
    "Budget",
    "Column",
    "RowSpec",
    "TableSpec",
    "budget_from",
    "parse_seeds",
    "parse_tables",
    "run_survey",
    "write_outputs",
    "merge_outputs",
]
