"""Shared option handling of the commands: model options and the common checks.

Model options come as ``--set key=value`` and free ``--foo-bar X`` flags. Both forms
become constructor keyword arguments of the catalog model (``--n-components 8`` ->
``n_components=8``). Values are parsed as JSON when they are valid JSON (numbers, booleans,
``null``, lists, objects, quoted strings) and kept as plain strings otherwise, so
``--set hidden=[64,64]`` gives a list and ``--act silu`` a string.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probpath.cli.errors import BadInput

__all__ = [
    "parse_value",
    "parse_set_options",
    "parse_extra_args",
    "merge_options",
    "check_positive",
    "check_seed",
    "MAX_SEED",
    "load_data",
    "load_run",
]


def parse_value(text: str) -> Any:
    """JSON value of ``text``, or ``text`` itself when it is not JSON.

    >>> parse_value("8"), parse_value("[64, 64]"), parse_value("silu"), parse_value("true")
    (8, [64, 64], 'silu', True)
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"the value {text[:20]}... is nested too deeply; flatten it") from None
    except ValueError as exc:
        if text.lstrip()[:1] in ("{", "[", '"'):  # meant as JSON: say what is wrong
            raise ValueError(
                f"the value {text!r} is not valid JSON ({exc}); write e.g. hidden=[64,64] or "
                'network={"hidden": [64, 64]}'
            ) from None
        return text


def _key(raw: str, where: str) -> str:
    key = raw.strip().replace("-", "_")
    if not key.isidentifier():
        raise ValueError(
            f"{where}: {raw!r} is not an option name; use letters, digits, '-' or '_', "
            "e.g. --set n_components=8"
        )
    return key


def parse_set_options(items: Sequence[str]) -> dict[str, Any]:
    """``["n_components=8", "hidden=[64,64]"]`` -> ``{"n_components": 8, "hidden": [64, 64]}``.

    Raises:
        ValueError: an item without ``=``, an empty or invalid key, or a key given twice.
    """
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"invalid --set {item!r}: write key=value, e.g. --set n_components=8")
        raw, value = item.split("=", 1)
        if not raw.strip():
            raise ValueError(f"invalid --set {item!r}: the key before '=' is empty")
        key = _key(raw, f"--set {item!r}")
        if key in out:
            raise ValueError(f"--set {key} is given twice; give each option once")
        out[key] = parse_value(value)
    return out


def parse_extra_args(args: Sequence[str]) -> dict[str, Any]:
    """Turn the options the command does not know into model keyword arguments.

    ``--n-components 8`` and ``--n-components=8`` give ``n_components=8``; a flag followed
    by another option (or nothing) is ``True``; ``--no-foo`` alone is ``foo=False``.

    Raises:
        ValueError: a stray positional argument or a repeated option.
    """
    out: dict[str, Any] = {}
    i = 0
    args = list(args)
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or token == "--":
            raise ValueError(
                f"unexpected argument {token!r}; model options are written --name value "
                "(or --set name=value)"
            )
        body = token[2:]
        if "=" in body:
            raw, text = body.split("=", 1)
            value: Any = parse_value(text)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            raw, value = body, parse_value(args[i + 1])
            i += 2
        elif body.startswith("no-") and len(body) > 3:
            raw, value = body[3:], False
            i += 1
        else:
            raw, value = body, True
            i += 1
        key = _key(raw, f"option {token!r}")
        if key in out:
            raise ValueError(f"option --{raw} is given twice; give each option once")
        out[key] = value
    return out


def merge_options(flags: dict[str, Any], sets: dict[str, Any]) -> dict[str, Any]:
    """Union of both forms; the same key in both is an error (ambiguous)."""
    both = sorted(set(flags) & set(sets))
    if both:
        raise ValueError(f"option(s) {both} given both as --flag and as --set; give them once")
    return {**flags, **sets}


def check_positive(value, name: str, *, integer: bool = False) -> None:
    """Refuse a non-positive (or non-finite) option value; ``None`` means "not given"."""
    if value is None:
        return
    ok = value >= 1 if integer else (math.isfinite(value) and value > 0)
    if not ok:
        raise BadInput(f"{name} must be {'>= 1' if integer else '> 0'}, got {value}")


MAX_SEED = 2**63 - 2
"""Largest ``--seed`` (torch seeds are 64-bit; ``sample`` also uses ``seed + 1``)."""


def check_seed(seed: int) -> None:
    """Refuse a seed torch cannot take (it raised ``Overflow when unpacking long``)."""
    if not 0 <= seed <= MAX_SEED:
        raise BadInput(f"--seed must be in [0, 2**63 - 2], got {seed}")


def load_data(data: str, n: int | None, seed: int, labels: Path | None = None):
    """The data set ``data`` (a name or a file), ``n`` samples of it when given; ``labels``
    names a file of integer labels for a data file (IDX, .npy or .csv)."""
    from probpath.data import load_dataset

    if labels is None:
        return load_dataset(data, n=n, seed=seed)
    return load_dataset(data, n=n, seed=seed, labels=str(labels))


def load_run(run_dir: Path, dev, weights: str, max_params: int | None = None):
    """``(model, record)`` of a run directory (see :func:`probpath.cli.rundir.load_run`)."""
    from probpath.runs import load_run as _load

    return _load(run_dir, device=str(dev), weights=weights, max_params=max_params)
