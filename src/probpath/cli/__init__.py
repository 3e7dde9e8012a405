"""The ``probpath`` command line (typer app in :mod:`probpath.cli.main`)."""

__all__: list[str] = []
