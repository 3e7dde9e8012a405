"""``probpath.load``: rebuild any saved model from ``config.json`` + ``model.safetensors``.

One load-time validator for every saved model, neural or estimator, in this order:

1. ``config.json``: a bounded regular file, a JSON object (deep nesting refused), a known
   class (from the catalog, never from a name the file invents);
2. the model is built from its configuration with its allocations bounded by ``max_params``
   (:func:`probpath.core.limits.build_bounded`);
3. the expected weights — keys, shapes, float dtypes — are derived from that model (its
   ``state_dict``) or, for an estimator, from its configuration (:mod:`probpath.core.
   fitted_specs`; the ``"state"`` keys come from an allow-list);
4. the safetensors header is checked against them before any weight is read; the weights
   read are the committed ones of a checkpoint (:func:`probpath.training.checkpoint.
   committed_file`) and must be finite.

Every refusal is a :class:`~probpath.core.serialization.CheckpointError` (or a
:class:`~probpath.core.limits.ResourceLimitError`) naming the file and the key. Only JSON and
safetensors are read; nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path

from probpath.catalog import entry_for_class, get_entry
from probpath.core.fitted_specs import check_plain_state, expected_fitted
from probpath.core.limits import DEFAULT_MAX_PARAMS, ResourceLimitError, build_bounded
from probpath.core.model import FORMAT_VERSION, Estimator, Model
from probpath.core.serialization import CheckpointError, TensorInfo, load_tensors, read_json

__all__ = ["load"]


def load(
    directory: str | Path,
    device: str = "cpu",
    *,
    space: str = "data",
    max_params: int = DEFAULT_MAX_PARAMS,
):
    """Load a model saved with ``model.save(directory)`` (or a run directory of ``fit``).

    Only JSON and safetensors are read; nothing is unpickled.

    Args:
        directory: the folder holding ``config.json`` and ``model.safetensors``.
        device: where to put the model.
        space: ``"data"``: a ``probpath fit`` run directory (with ``run.json``) comes back
            as a :class:`~probpath.compare.runmodel.RunModel` that samples and scores in the
            data's own space with the weights ``fit`` evaluated with (EMA), exactly as the
            CLI; ``"model"``: the bare model and its raw weights.
        max_params: largest number of tensor elements the configuration may ask for; raise
            it only for files you trust.

    Raises:
        CheckpointError: a malformed, foreign or unsafe file, naming the file and the key.
        ResourceLimitError: the configuration asks for more than ``max_params`` elements.
    """
    from probpath.training.checkpoint import MODEL_FILE, committed_file

    if space not in ("data", "model"):
        raise ValueError(f"space must be 'data' or 'model', got {space!r}")
    directory = Path(directory)
    if space == "data" and (directory / "run.json").is_file():
        from probpath.compare.runmodel import load_run_model

        return load_run_model(directory, device, max_params)
    if directory.is_file():
        raise CheckpointError(
            f"{directory} is a file; pass the directory that holds config.json and "
            "model.safetensors"
        )
    config_path = directory / "config.json"
    meta = read_json(config_path)
    if meta.get("format_version") != FORMAT_VERSION or not isinstance(meta.get("class"), str):
        raise CheckpointError(
            f"{config_path} is not a probpath model config (format_version "
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
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise CheckpointError(f"{config_path}: 'config' must be an object")
    what = f"{meta['class']} of {config_path}"
    try:
        model = build_bounded(lambda: entry.cls(**config), max_params, what)
    except ResourceLimitError:
        raise
    except Exception as exc:  # the constructor's input is untrusted: any failure is the file's
        raise CheckpointError(f"cannot rebuild {what}: {type(exc).__name__}: {exc}") from None
    weights = committed_file(directory, MODEL_FILE)
    if isinstance(model, Model):
        expected = {k: TensorInfo.of(v) for k, v in model.state_dict().items()}
        model.load_weights(load_tensors(weights, device, expected), str(weights))
        model.to(device)
        model.eval()
    elif isinstance(model, Estimator):
        state = check_plain_state(type(model), meta.get("state", {}), str(config_path))
        expected = expected_fitted(type(model), model.config, state, max_params, str(config_path))
        model.load_fitted(load_tensors(weights, device, expected), state)
    else:  # pragma: no cover - every catalog class derives from one of the two
        raise CheckpointError(f"{meta['class']} is neither a Model nor an Estimator")
    model.catalog_name = entry.name
    from probpath.training.seeding import mark_pretrained

    mark_pretrained(model)  # Trainer.fit continues from these weights (init="auto")
    return model
