"""The ``probpath`` typer application; each command registers itself from its own module."""

from __future__ import annotations

import typer

from probpath.cli.errors import OneLineErrors

__all__ = ["app", "EXTRA_ARGS"]

app = typer.Typer(
    name="probpath",
    cls=OneLineErrors,
    help=(
        "probpath: probabilistic modeling of data, from a single Gaussian to flow matching, "
        "under one API. Run 'probpath info' for the models and data sets, 'probpath compare "
        "--quick' for the main job."
    ),
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}
"""Context settings of commands that take free ``--model-option value`` flags."""
