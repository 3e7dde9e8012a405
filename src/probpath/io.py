"""``probpath.load``: rebuild any saved model from ``config.json`` + ``model.safetensors``."""

from __future__ import annotations

from pathlib import Path

from probpath.catalog import entry_for_class, get_entry
from probpath.core.model import FORMAT_VERSION, Estimator, Model
from probpath.core.serialization import CheckpointError, load_tensors, read_json

__all__ = ["load"]


def load(directory: str | Path, device: str = "cpu", *, space: str = "data"):
    """Load a model saved with ``model.save(directory)`` (or a run directory of ``fit``).

    Only JSON and safetensors are read; nothing is unpickled. Raises
    :class:`~probpath.core.serialization.CheckpointError` on a malformed or foreign file.

    Args:
        directory: the saved model or run directory.
        device: where to put the model.
        space: ``"data"``: a ``probpath fit`` run directory (with ``run.json``) comes back
            as a :class:`~probpath.compare.runmodel.RunModel` that samples and scores in the
            data's own space with the weights ``fit`` evaluated with (EMA), exactly as the
            CLI; ``"model"``: the bare model and its raw weights.
    """
    if space not in ("data", "model"):
        raise ValueError(f"space must be 'data' or 'model', got {space!r}")
    directory = Path(directory)
    if space == "data" and (directory / "run.json").is_file():
        from probpath.compare.runmodel import load_run_model

        return load_run_model(directory, device)
    if directory.is_file():
        raise CheckpointError(
            f"{directory} is a file; pass the directory that holds config.json and "
            "model.safetensors"
        )
    meta = read_json(directory / "config.json")
    if meta.get("format_version") != FORMAT_VERSION or "class" not in meta:
        raise CheckpointError(
            f"{directory / 'config.json'} is not a probpath model config (format_version "
            f"{meta.get('format_version')!r}, expected {FORMAT_VERSION})"
        )
    try:
        name = meta.get("catalog")
        entry = get_entry(name) if name else entry_for_class(meta["class"])
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    if entry.cls.__name__ != meta["class"]:
        raise CheckpointError(
            f"{directory / 'config.json'}: catalog entry {entry.name!r} is a "
            f"{entry.cls.__name__}, not a {meta['class']}"
        )
    config = meta.get("config", {})
    if not isinstance(config, dict):
        raise CheckpointError(f"{directory / 'config.json'}: 'config' must be an object")
    try:
        model = entry.cls(**config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot rebuild {meta['class']} from config.json: {exc}") from None
    tensors = load_tensors(directory / "model.safetensors", device=device)
    if isinstance(model, Model):
        model.load_weights(tensors, str(directory / "model.safetensors"))
        model.to(device)
        model.eval()
    elif isinstance(model, Estimator):
        model.load_fitted(tensors, meta.get("state", {}))
    else:  # pragma: no cover - every catalog class derives from one of the two
        raise CheckpointError(f"{meta['class']} is neither a Model nor an Estimator")
    model.catalog_name = entry.name
    from probpath.training.seeding import mark_pretrained

    mark_pretrained(model)  # Trainer.fit continues from these weights (init="auto")
    return model
