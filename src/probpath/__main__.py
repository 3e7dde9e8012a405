"""``python -m probpath``: the same command as the ``probpath`` script."""

from probpath.cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
