"""Helpers shared by the EM and the variational mixtures: scikit-learn's initial
responsibilities, checked initial parameters, and fast responsibility-weighted sums."""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "INIT_PARAMS",
    "check_array_parameter",
    "initial_responsibilities",
    "responsibility_sums",
]

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


def check_array_parameter(value, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A user-given initial parameter as a float64 array of ``shape`` (scikit-learn's messages)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != tuple(shape):
        raise ValueError(
            f"The parameter '{name}' should have the shape of {tuple(shape)}, but got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"The parameter '{name}' contains NaN or infinite values")
    return arr


def responsibility_sums(resp: torch.Tensor, f: torch.Tensor, blocks: int = 64) -> torch.Tensor:
    """``resp^T @ f``: the responsibility-weighted sums ``Σ_n γ_nk f_n``, shape ``(K, F)``.

    Long-and-thin products (``N`` rows, few columns) run several times faster as a batch of
    ``blocks`` products summed afterwards than as one matrix product reducing over ``N``.
    ``resp`` may be the transpose of a contiguous ``(K, N)`` array (the E-step's layout).

    Args:
        resp: ``(N, K)`` responsibilities (times sample weights).
        f: ``(N, F)`` per-sample features.
    """
    n, k = resp.shape
    b = max(1, min(blocks, n // 512))
    m = n // b * b
    if not resp.is_contiguous() and resp.T.is_contiguous():
        rt = resp.T  # (K, N): blocks of columns, batched as (b, K, N / b)
        out = torch.bmm(
            rt[:, :m].reshape(k, b, m // b).transpose(0, 1), f[:m].reshape(b, m // b, f.shape[1])
        ).sum(0)
        return out + rt[:, m:] @ f[m:] if m < n else out
    out = torch.bmm(
        resp[:m].reshape(b, m // b, k).transpose(1, 2), f[:m].reshape(b, m // b, f.shape[1])
    ).sum(0)
    if m < n:
        out = out + resp[m:].T @ f[m:]
    return out


def initial_responsibilities(
    x: torch.Tensor,
    n_components: int,
    init_params: str,
    rng: np.random.RandomState,
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Initial responsibilities ``(N, K)``, drawn exactly as scikit-learn's mixtures draw them.

    ``kmeans`` / ``k-means++`` use scikit-learn's ``KMeans`` / ``kmeans_plusplus`` (the
    design guide's choice for seeding); ``random`` draws uniform rows; ``random_from_data``
    puts each component on one data point. Shared by EM and the variational mixture.
    """
    n, k = x.shape[0], n_components
    if init_params in ("kmeans", "k-means++"):
        from sklearn.cluster import KMeans, kmeans_plusplus

        x_np = x.detach().cpu().numpy()
        w_np = None if sample_weight is None else sample_weight.cpu().numpy()
        resp = np.zeros((n, k))
        if init_params == "kmeans":
            km = KMeans(n_clusters=k, n_init=1, random_state=rng)
            labels = km.fit(x_np, sample_weight=w_np).labels_
            resp[np.arange(n), labels] = 1
        else:
            _, idx = kmeans_plusplus(x_np, k, random_state=rng, sample_weight=w_np)
            resp[idx, np.arange(k)] = 1
        return torch.as_tensor(resp, dtype=x.dtype, device=x.device)
    if init_params == "random":
        resp = torch.as_tensor(rng.uniform(size=(n, k)), dtype=x.dtype, device=x.device)
        return resp / resp.sum(1, keepdim=True)
    resp = torch.zeros(n, k, dtype=x.dtype, device=x.device)
    idx = rng.choice(n, size=k, replace=False)
    resp[torch.as_tensor(idx, device=x.device), torch.arange(k, device=x.device)] = 1
    return resp
