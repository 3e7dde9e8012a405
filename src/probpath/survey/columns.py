"""Every column the survey tables can show: header, unit and direction, in ONE mapping.

The metric columns are views of :data:`probpath.metrics.registry.METRICS` (label and
direction; the survey prints shares in %); the others (NFE, parameters, times, bits/dim,
Factor-CLS) are the survey's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from probpath.metrics.registry import METRICS

__all__ = ["Column", "COLUMNS", "header"]


@dataclass(frozen=True)
class Column:
    """One table column.

    Attributes:
        name: the key in each row's raw values (and in the JSON).
        header: the Markdown header text.
        unit: unit shown after the header ("" for counts and ratios).
        higher_is_better: ``True`` (↑), ``False`` (↓) or ``None`` (no direction).
        digits: significant digits of the printed mean and spread.
        text: whether the value is a label (e.g. ``"20×2"``), not averaged over seeds.
    """

    name: str
    header: str
    unit: str = ""
    higher_is_better: bool | None = None
    digits: int = 3
    text: bool = False


def _metric(name: str, unit: str | None = None, digits: int = 3) -> Column:
    """The column of registered metric ``name`` (its label and direction)."""
    spec = METRICS[name]
    return Column(name, spec.label, spec.unit if unit is None else unit, spec.higher_is_better,
                  digits)  # fmt: skip


COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        Column("nfe", "NFE", "", False, text=True),
        Column("params", "Params", "×10³", None, 4),
        _metric("fd_features"),
        _metric("precision", digits=2),
        _metric("recall", digits=2),
        _metric("class_accuracy", "%"),
        Column("train_seconds", "Train", "s", None, 2),
        Column("train_steps", "Steps", "", None, 4),
        Column("sample_seconds_per_1k", "Sample", "s / 1k", None, 2),
        Column("bits_per_dim", "Bits/dim", "bits/dim", False, 4),
        Column("factor_cls", "Factor-CLS", "%", True, 3),
    )
}


def header(name: str) -> str:
    """``"FD features (↓)"``, ``"Train (s)"``: the header of column ``name`` with its unit and
    arrow."""
    col = COLUMNS[name]
    arrow = {True: " ↑", False: " ↓", None: ""}[col.higher_is_better]
    unit = f" [{col.unit}]" if col.unit else ""
    return f"{col.header}{unit}{arrow}"
