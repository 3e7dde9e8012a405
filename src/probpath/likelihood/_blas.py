"""BLAS kernels torch does not expose (``trmm``, ``syrk``) for CPU tensors, and serial lanes.

The full-covariance E-step multiplies by a triangular factor ``U_k`` and the M-step forms
Gram matrices ``X^T X``; a general product spends twice the flops each needs. For contiguous
float32 / float64 CPU tensors these helpers call CBLAS ``?trmm`` / ``?syrk`` of the OpenBLAS
that SciPy ships (through ``ctypes``, which releases the GIL) and NumPy's ``matmul`` (also
OpenBLAS, as scikit-learn; on AMD CPUs torch's MKL runs float64 products with few columns at
about half OpenBLAS's speed). Anywhere else (a GPU, other dtypes, autograd, no such library)
and outside :func:`serial_lanes` they fall back to torch. Either way the result is the same
matrix to round-off.

Threads: OpenBLAS's idle workers busy-wait, and so do torch's OpenMP threads; alternating
between the two pools with both on two threads made an EM fit 15x slower here, and small
BLAS calls gain little from threads anyway. So the native kernels run only inside
:func:`serial_lanes`, where OpenBLAS and torch are both on one thread and the caller splits
its work into lanes run by Python threads instead (torch, NumPy and ``ctypes`` calls release
the GIL).
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

__all__ = ["serial_lanes", "native", "mm", "triangle_of", "trmm_", "syrk_", "symmetrize_upper_"]

T = TypeVar("T")
# CBLAS enumerations
_ROW_MAJOR, _NO_TRANS, _TRANS, _UPPER, _LOWER, _NON_UNIT, _RIGHT = 101, 111, 112, 121, 122, 131, 142
_STATE: dict = {}  # "openblas": thread controls, "kernels": {dtype: (trmm, syrk)}, "serial": depth


def _load_kernels() -> dict:
    """``{dtype: (trmm, syrk)}`` ctypes functions from a loaded OpenBLAS, or ``{}``."""
    # SciPy's wheels ship OpenBLAS with ``scipy_`` symbols (32-bit integers), NumPy's with
    # ``scipy_...64_`` ones (64-bit); a plain OpenBLAS has neither prefix nor suffix
    names = (
        ("scipy_", "", ctypes.c_int),
        ("scipy_", "64_", ctypes.c_int64),
        ("", "", ctypes.c_int),
    )
    for lib in _STATE["openblas"].lib_controllers:
        try:
            handle = ctypes.CDLL(lib.filepath)
        except OSError:
            continue
        for prefix, suffix, integer in names:
            try:
                found = {
                    dtype: tuple(
                        getattr(handle, f"{prefix}cblas_{c}{op}{suffix}") for op in ("trmm", "syrk")
                    )
                    for dtype, c in ((torch.float64, "d"), (torch.float32, "s"))
                }
            except AttributeError:
                continue
            for dtype, (trmm, syrk) in found.items():
                real = ctypes.c_double if dtype == torch.float64 else ctypes.c_float
                enum, pointer, i = ctypes.c_int, ctypes.c_void_p, integer
                trmm.argtypes = [enum] * 5 + [i, i, real, pointer, i, pointer, i]
                syrk.argtypes = [enum] * 3 + [i, i, real, pointer, i, real, pointer, i]
                trmm.restype = syrk.restype = None
            return found
    return {}


@contextlib.contextmanager
def serial_lanes() -> Iterator[Callable[[Callable[[int, int], T]], list[T]]]:
    """A block where torch and OpenBLAS run on one thread each (restored after).

    Yields ``run(job)``: calls ``job(lane, lanes)`` for ``lane = 0 .. lanes - 1`` in Python
    threads and returns the results in lane order (the outcome does not depend on
    scheduling). ``lanes`` is torch's thread count on entry when the BLAS kernels release
    the GIL, else 1.
    """
    if "openblas" not in _STATE:
        _STATE["openblas"] = ThreadpoolController().select(internal_api="openblas")
        _STATE["kernels"] = _load_kernels()
    threads = torch.get_num_threads()
    lanes = threads if _STATE["kernels"] else 1

    def in_thread(job: Callable[[int, int], T], lane: int) -> T:
        torch.set_num_threads(1)  # OpenMP's thread count is per thread: set it in this one
        return job(lane, lanes)

    def run(job: Callable[[int, int], T]) -> list[T]:
        if lanes == 1:
            return [job(0, 1)]
        with ThreadPoolExecutor(lanes) as pool:
            return list(pool.map(lambda lane: in_thread(job, lane), range(lanes)))

    torch.set_num_threads(1)
    _STATE["serial"] = _STATE.get("serial", 0) + 1
    try:
        with _STATE["openblas"].limit(limits=1):
            yield run
    finally:
        _STATE["serial"] -= 1
        torch.set_num_threads(threads)


def native(*tensors: torch.Tensor) -> bool:
    """Whether the native kernels apply: inside :func:`serial_lanes`, CPU, one float dtype
    with a kernel, contiguous, no autograd."""
    if not _STATE.get("serial"):
        return False
    dtype = tensors[0].dtype
    for t in tensors:
        if t.device.type != "cpu" or t.dtype != dtype or t.requires_grad:
            return False
        if not t.is_contiguous():
            return False
    return dtype in _STATE["kernels"]


def mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = a @ b`` (2-D; ``a`` and ``b`` may be strided views)."""
    if not native(out) or a.device.type != "cpu" or b.device.type != "cpu":
        return torch.mm(a, b, out=out)
    np.matmul(a.numpy(), b.numpy(), out=out.numpy())
    return out


def triangle_of(factors: torch.Tensor) -> str | None:
    """``"upper"`` / ``"lower"`` if every ``(..., d, d)`` factor is triangular that way (a
    diagonal one counts as upper), else ``None``."""
    if bool((torch.tril(factors, -1) == 0).all()):
        return "upper"
    if bool((torch.triu(factors, 1) == 0).all()):
        return "lower"
    return None


def trmm_(x: torch.Tensor, u: torch.Tensor, triangle: str | None) -> torch.Tensor:
    """``x <- x U`` in place for a triangular ``U`` ``(d, d)``; ``x`` is ``(n, d)``.

    Half the flops of ``x @ U``. ``triangle`` is :func:`triangle_of`'s answer for ``U``
    (``None``: a general product). Returns ``x``.
    """
    if triangle is None or not native(x, u) or x.shape[0] == 0:
        return x.copy_(x @ u)
    (n, d), uplo = x.shape, _UPPER if triangle == "upper" else _LOWER
    trmm = _STATE["kernels"][x.dtype][0]
    trmm(
        _ROW_MAJOR, _RIGHT, uplo, _NO_TRANS, _NON_UNIT, n, d, 1.0, u.data_ptr(), d, x.data_ptr(), d
    )
    return x


def syrk_(gram: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``gram += x^T x`` (``(d, d)``, symmetric) for ``x`` ``(n, d)``; returns ``gram``.

    On the native path only the upper triangle of ``gram`` is updated (half the flops):
    call :func:`symmetrize_upper_` once after the last update.
    """
    if not native(gram, x) or x.shape[0] == 0:
        return gram.addmm_(x.T, x)
    n, d = x.shape
    syrk = _STATE["kernels"][x.dtype][1]
    syrk(_ROW_MAJOR, _UPPER, _TRANS, d, n, 1.0, x.data_ptr(), d, 1.0, gram.data_ptr(), d)
    return gram


def symmetrize_upper_(gram: torch.Tensor) -> torch.Tensor:
    """Copy the upper triangle of ``(..., d, d)`` ``gram`` onto its lower one, in place."""
    d = gram.shape[-1]
    lower = torch.ones(d, d, dtype=torch.bool, device=gram.device).tril_(-1)
    return gram.copy_(torch.where(lower, gram.transpose(-1, -2), gram))
