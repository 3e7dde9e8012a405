"""The survey's table specs are consistent data: known entries, known columns, valid bases."""

from __future__ import annotations

import pytest

from probpath.catalog import model_names
from probpath.survey import (
    BUDGETS,
    COLUMNS,
    TABLES,
    RowSpec,
    budget_from,
    parse_seeds,
    parse_tables,
)
from probpath.survey.columns import header


@pytest.mark.parametrize("number", sorted(TABLES))
def test_rows_name_catalog_entries(number):
    known = set(model_names())
    spec = TABLES[number]
    labels = [r.label for r in spec.rows]
    assert len(labels) == len(set(labels)), "row labels must be unique within a table"
    for row in spec.rows:
        assert row.entry in known, row.entry
        if row.base is not None:
            assert row.base in labels, f"{row.label}: base {row.base!r} is not a row"
    assert set(spec.columns) <= set(COLUMNS)


def test_table1_lists_latent_diffusion():
    assert {"ldm", "latent-cfm"} <= {r.entry for r in TABLES[1].rows}


def test_every_survey_table_cites_a_published_value():
    for spec in TABLES.values():
        for row in spec.rows:
            assert row.published, f"table {spec.number} row {row.label} has no published note"


def test_row_kind_and_base_are_checked():
    with pytest.raises(ValueError, match="kind must be one of"):
        RowSpec("x", "ddpm", kind="nope")
    with pytest.raises(ValueError, match="needs base"):
        RowSpec("x", "ddpm", kind="solver")
    with pytest.raises(ValueError, match="needs base"):
        RowSpec("x", "ddpm", base="y")


def test_headers_carry_unit_and_arrow():
    assert header("fd_features") == "FD features ↓"
    assert header("factor_cls") == "Factor-CLS [%] ↑"
    assert header("train_seconds") == "Train [s]"


def test_budget_parsing():
    assert budget_from("quick") is BUDGETS["quick"]
    assert budget_from("Standard") is BUDGETS["standard"]
    assert budget_from("5").train_seconds == 5.0
    assert budget_from("2.5s").train_seconds == 2.5
    for bad in ("0", "-1", "fast", "inf", "nan"):
        with pytest.raises(ValueError, match="budget must be"):
            budget_from(bad)


def test_standard_budget_has_three_seeds():
    assert len(BUDGETS["standard"].seeds) >= 3


def test_tables_and_seeds_parsing():
    assert parse_tables("1, 4,1") == (1, 4)
    assert parse_seeds("0,1,2") == (0, 1, 2)
    for bad in ("", "5", "a", "0,9"):
        with pytest.raises(ValueError, match="tables must be"):
            parse_tables(bad)
    for bad in ("", "-1", "x"):
        with pytest.raises(ValueError, match="seeds must be"):
            parse_seeds(bad)
