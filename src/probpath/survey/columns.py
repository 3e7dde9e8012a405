"""Every column the survey tables can show: header, unit and direction, in ONE mapping.

When ``probpath.metrics.registry.METRICS`` exists, this mapping is the one place to replace
with a view of it (name -> header / unit / ``higher_is_better``).
"""

from __future__ import annotations

from dataclasses import dataclass

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


COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        Column("nfe", "NFE", "", False, text=True),
        Column("params", "Params", "×10³", None, 4),
        Column("fd_features", "FD features", "", False),
        Column("precision", "Precision", "", True, 2),
        Column("recall", "Recall", "", True, 2),
        Column("class_accuracy", "Class acc.", "%", True, 3),
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
