"""A screened EM pass for full-covariance Gaussian mixtures in high dimension.

With well-separated components most responsibilities ``γ_nk`` are far below float64
resolution, yet the dense E- and M-steps spend ``2 N K d^2`` flops on every pair. The screen
finds the pairs that can matter and spends the ``d^2`` work only there:

1. **A lower bound on every distance.** ``r_nk = ||(x_n - mu_k) U_k||`` (the whitened
   distance of :meth:`~probpath.likelihood.covariance._Full.whitening`) is at least its
   length along any orthonormal directions ``Q_k``: ``L_nk = ||(x_n - mu_k) U_k Q_k|| <=
   r_nk``. ``Q_k`` spans the whitened differences ``(mu_j - mu_k) U_k`` to the ``m = min(K
   - 1, d / 4)`` nearest means, where separation shows; all ``K`` blocks ``U_k Q_k`` make
   one ``(n, d) @ (d, K m)`` product, ``m / d`` of the dense one, in float32 (only the
   screen uses it). Rounding is covered: a length-``d`` dot product is within ``γ_d |a|^T
   |b|`` of the exact one, ``γ_d = d u / (1 - d u)`` (Higham, *Accuracy and Stability of
   Numerical Algorithms*, 2002, §3.1), here with float32's ``u = 2^-24`` and two more
   roundings for converting ``x``, ``U_k Q_k`` and the offset to float32; with
   Cauchy-Schwarz this bounds the error of ``L_nk`` by ``γ_{d+4} (||x_n|| s_k + t_k)``
   (``s_k``, ``t_k`` from the norms of ``U_k``, ``U_k Q_k`` and ``mu_k``). Twice that is
   subtracted from ``L_nk``, which is first shrunk by ``γ_{m+3}`` (the float32 sum of ``m``
   squares and the square root) and a relative ``1e-10`` (``Q_k`` is orthonormal only to
   float64 round-off).
2. **An exact anchor.** Each row's candidate, the ``k`` with the largest upper bound
   ``ln π_k + c_k - L_nk / 2`` (all of them on a tie), gets its exact log-joint ``ℓ_n*``.
   A block where over half of the pairs lie within ``margin`` of their row's largest upper
   bound is computed dense instead: those pairs would be kept anyway.
3. **The cut.** A pair whose upper bound ``ln π_k + c_k - L_nk / 2`` is more than ``margin``
   nats below ``ℓ_n*`` has ``γ_nk < e^{-margin}``; it is skipped. The others get their exact
   float64 ``ℓ_nk`` (a triangular product ``(x_n - mu_k) U_k`` per kept pair), and the
   M-step's ``S2_k = Σ_n γ_nk x_n x_n^T`` is summed over the same rows (a symmetric
   rank-``N_k'`` update per component; both kernels from :mod:`~probpath.likelihood._blas`,
   half the flops of general products).

Skipping changes each ``ln p(x_n)`` by at most ``K e^{-margin}`` (``~1e-21`` relative at the
default 50 nats) and each responsibility by less than ``e^{-margin}``: the fit is the dense
EM's up to float64 round-off. When most pairs are kept (overlapping components) the screen
is overhead; :class:`ScreenPolicy` then switches it off for a while.
"""

from __future__ import annotations

import math

import torch

from probpath.likelihood._blas import mm, serial_lanes, symmetrize_upper_, syrk_, triangle_of, trmm_
from probpath.likelihood.covariance import covariance_type

__all__ = ["Screen", "ScreenPolicy", "screened_pass", "screened_labels"]

#: A skipped pair's responsibility is provably below ``e^{-MARGIN}``.
MARGIN = 50.0
_U32 = 2.0**-24  # float32 unit round-off (the bound's arithmetic)
_SLACK = 1e-10  # relative: Q_k from a QR factorisation is orthonormal to ~d u, not exactly
_FULL = covariance_type("full")
_DENSE_ROWS = 2048  # rows per dense block: its (rows, d) scratch stays in the cache
_PROBE_ROWS = 2048  # a lane's first rows: if they go dense, the rest skips the bounds
ROWS = 16384  # most rows per block of a pass


class ScreenPolicy:
    """How to screen, from the passes so far (the results are exact either way).

    * After two passes in a row that kept more than half of the pairs, the next ``backoff``
      passes run dense: the screen would cost more than it saves. One such pass alone is
      common: the first E-step from a crude start.
    * The number of directions ``m`` starts at its largest; it drops by one while the
      bound keeps at most 5 % more pairs than are needed (within ``MARGIN`` of the row's
      best) and doubles when it keeps over 20 % more.
    """

    def __init__(self, backoff: int = 8) -> None:
        self.backoff = backoff
        self.directions: int | None = None  # None: the largest
        self._skip = 0
        self._dense_passes = 0

    def use(self) -> bool:
        if self._skip > 0:
            self._skip -= 1
            return False
        return True

    def record(self, kept: int, needed: int, pairs: int, directions: int) -> None:
        self._dense_passes = self._dense_passes + 1 if kept > 0.5 * pairs else 0
        if self._dense_passes >= 2:
            self._skip, self._dense_passes = self.backoff, 0
        if kept <= 1.05 * needed:
            self.directions = max(2, directions - 1)
        elif kept > 1.2 * needed:
            self.directions = 2 * directions


def _gamma(m: int) -> float:
    return m * _U32 / (1 - m * _U32)


def _screen_directions(means_c, prec_chol, m: int):
    """Per component ``k`` an orthonormal basis ``Q_k`` of the whitened mean differences
    ``(mu_j - mu_k) U_k`` (the ``m`` nearest ``j``). Returns the ``(d, K m)`` matrix of the
    ``U_k Q_k`` side by side, the offsets ``mu_k U_k Q_k`` ``(K m,)``, and the rounding
    terms ``scale``, ``shift`` ``(K,)`` of step 1 (the error of ``L_nk`` is at most
    ``γ (||x_n|| scale_k + shift_k)``), and the ``(K, K m)`` 0/1 matrix that sums each
    component's ``m`` squared projections; the two matrices and the offsets in float32."""
    k = means_c.shape[0]
    factors = []
    for j in range(k):
        diff = (means_c - means_c[j]) @ prec_chol[j]  # (K, d), row j is zero
        order = torch.argsort(torch.linalg.vector_norm(diff, dim=1))
        q = torch.linalg.qr(diff[order[1 : m + 1]].T).Q  # (d, m) orthonormal columns
        factors.append(prec_chol[j] @ q)
    w = torch.stack(factors, 1)  # (d, K, m)
    offsets = torch.stack([means_c[j] @ w[:, j] for j in range(k)])  # (K, m)
    # rounding scales of step 1: ||x|| times ``scale`` plus ``shift`` (see the module)
    scale = torch.linalg.vector_norm(w, dim=(0, 2))
    scale += math.sqrt(m) * torch.linalg.matrix_norm(prec_chol)  # U_k Q_k in floating point
    shift = (
        torch.linalg.vector_norm(offsets, dim=1) + torch.linalg.vector_norm(means_c, dim=1) * scale
    )
    blocks = torch.eye(k, dtype=torch.float32, device=w.device).repeat_interleave(m, 1)
    w32, offsets32 = w.reshape(means_c.shape[1], -1).float(), offsets.reshape(-1).float()
    return w32, offsets32, scale, shift, blocks


def _fresh(shape, like, slot):
    """A workspace that allocates (for calls outside a fit)."""
    return like.new_empty(shape)


def _upper_log_joint_t(xc, screen, log_c, ws) -> torch.Tensor:
    """``(K, n)`` upper bounds of ``ℓ_nk`` from the partial distances (module, step 1)."""
    w, offsets, scale, shift, blocks = screen  # w, offsets, blocks in float32
    (n, d), k = xc.shape, log_c.shape[0]
    x32 = ws((n, d), w, "s_x32").copy_(xc)
    y = mm(x32, w, ws((n, w.shape[1]), w, "s_y")).sub_(offsets).square_()
    squares = mm(blocks, y.T, ws((k, n), w, "s_squares"))  # per-component sums, (K, n)
    # beyond float32's range (|x| ~ 1e38) a distance bound of 0 is still a bound
    lower = ws((k, n), xc, "s_upper").copy_(squares).sqrt_().nan_to_num_(0.0, 0.0)
    norm = torch.linalg.vector_norm(xc, dim=1, out=ws((1, n), xc, "s_norm")[0])
    err = torch.outer(scale, norm, out=ws((k, n), xc, "s_err")).add_(shift[:, None])
    shrink = 1 - _SLACK - _gamma(w.shape[1] // k + 3)
    lower.mul_(shrink).sub_(err.mul_(2.0 * _gamma(d + 4))).clamp_min_(0)
    return lower.square_().mul_(-0.5).add_(log_c[:, None])


def _exact(ell, groups, x1, screen, ws, gathered) -> None:
    """``ell[k, n] = ℓ_nk`` (float64, exact) for the rows ``groups[k]`` ``(m_k,)``; appends
    ``(k, rows, x1[rows])`` per component to ``gathered`` for the second moments (copied into
    one reused buffer while it has room). ``x1`` is ``(n, d + 1)``: the centred rows and a
    column of ones."""
    n, d = x1.shape[0], x1.shape[1] - 1
    pool, out = ws((2 * n, d + 1), x1, "s_pool"), ws((n, d), x1, "s_exact")
    used = sum(len(xj) for _, _, xj in gathered)
    for j, idx in enumerate(groups):
        m = idx.numel()
        if m == 0:
            continue
        xj = pool[used : used + m] if used + m <= len(pool) else x1.new_empty(m, d + 1)
        used += m if used + m <= len(pool) else 0
        torch.index_select(x1, 0, idx, out=xj)
        y = torch.sub(xj[:, :d], screen.means_c[j], out=out[:m])
        trmm_(y, screen.prec_chol[j], screen.triangle)  # (x_n - mu_k) U_k
        ell[j].index_copy_(0, idx, y.square_().sum(1).mul_(-0.5).add_(screen.log_c[j]))
        gathered.append((j, idx, xj))


def _by_component(components: torch.Tensor, rows: torch.Tensor, k: int) -> tuple:
    """``rows`` split by their ``components`` (both ``(P,)``): ``K`` index tensors."""
    order = torch.argsort(components, stable=True)
    return rows[order].split(torch.bincount(components, minlength=k).tolist())


class Screen:
    """The screened log-joint for one set of parameters (see the module docstring).

    Args:
        center: ``(d,)``; means: ``(K, d)``; prec_chol: ``(K, d, d)`` factors ``U_k`` with
            ``P_k = U_k U_k^T``; whitening: ``(u_stack, b, c)`` of ``Covariance.whitening``
            for the centred means; log_weights: ``(K,)`` ``ln π_k``.
        directions: ``m`` of step 1 (``None``: ``min(K - 1, d / 4)``, the most).
    """

    def __init__(self, center, means, prec_chol, whitening, log_weights, directions=None):
        k, d = means.shape
        self.center, self.prec_chol, self.whitening = center, prec_chol, whitening
        self.means_c, self.triangle = means - center, triangle_of(prec_chol)
        self.log_weights, self.log_c = log_weights, log_weights + whitening[2]
        most = max(1, min(k - 1, d // 4))
        self.directions = most if directions is None else max(1, min(directions, most))
        self.columns = _screen_directions(means - center, prec_chol, self.directions)

    def log_joint_t(
        self, x1: torch.Tensor, ws=_fresh, margin: float = MARGIN
    ) -> tuple[torch.Tensor, list | None]:
        """``(K, n)`` exact ``ℓ_nk = ln π_k + ln N(x_n | mu_k, Sigma_k)`` for the kept pairs
        and ``-inf`` for the skipped ones (``γ_nk < e^{-margin}``), and the kept rows as
        ``(k, rows, x1[rows])``; ``None`` instead when the block was computed dense (more
        than half of its pairs could matter). ``x1`` ``(n, d + 1)``: centred rows and a
        column of ones (see :func:`screened_pass`); ``ws(shape, like, slot)`` hands out
        reused buffers. ``margin = 0`` keeps just enough for the row-wise argmax (every
        skipped pair's upper bound is below a kept exact value)."""
        xc, k = x1[:, :-1], self.log_c.shape[0]
        upper = _upper_log_joint_t(xc, self.columns, self.log_c, ws)
        best, anchor = upper.max(0)  # the anchors; a tied pair is kept by the cut below
        if int((upper >= best - margin).sum()) > 0.5 * upper.numel():
            return self.dense_log_joint_t(xc, ws), None  # kept whatever the anchors say
        ell = ws(upper.shape, xc, "s_ell").fill_(float("-inf"))
        gathered: list = []
        rows = torch.arange(xc.shape[0], device=xc.device)
        _exact(ell, _by_component(anchor, rows, k), x1, self, ws, gathered)
        cut = ell.amax(0).sub_(margin)
        j, n = torch.nonzero((upper >= cut) & (ell == float("-inf")), as_tuple=True)
        _exact(ell, _by_component(j, n, k), x1, self, ws, gathered)
        return ell, gathered

    def dense_log_joint_t(self, xc: torch.Tensor, ws=_fresh) -> torch.Tensor:
        """Every ``ℓ_nk`` ``(K, n)``: per component and cache-sized block of rows, the
        triangular product ``(x_n - mu_k) U_k`` and its squared norm."""
        k, d = self.means_c.shape
        ell = ws((k, xc.shape[0]), xc, "s_ell")
        work = ws((_DENSE_ROWS, d), xc, "s_dense")
        for s in range(0, xc.shape[0], _DENSE_ROWS):
            sub = xc[s : s + _DENSE_ROWS]
            y = work[: len(sub)]
            for j in range(k):
                trmm_(torch.sub(sub, self.means_c[j], out=y), self.prec_chol[j], self.triangle)
                torch.sum(y.square_(), 1, out=ell[j, s : s + len(sub)])
        return ell.mul_(-0.5).add_(self.log_c[:, None])


def _centred_with_ones(x: torch.Tensor, center: torch.Tensor, ws) -> torch.Tensor:
    """``[x - center, 1]`` ``(n, d + 1)``: the Gram matrix of its rows weighted by
    ``sqrt(γ_nk)`` holds ``S2_k``, ``S1_k`` and ``N_k`` at once."""
    x1 = ws((x.shape[0], x.shape[1] + 1), x, "s_x1")
    torch.sub(x, center, out=x1[:, :-1])
    x1[:, -1] = 1.0
    return x1


def _accumulate(x, w, screen: Screen, blocks, ws) -> tuple:
    """The E-step statistics over ``blocks`` ``[(start, stop)]`` of ``x``: the ``(K, d + 1,
    d + 1)`` Gram matrices of :func:`_centred_with_ones` (upper triangles), ``Σ w_n ln
    p(x_n)``, pairs kept, pairs needed."""
    k, d = screen.log_c.shape[0], x.shape[1]
    gram, ll = x.new_zeros(k, d + 1, d + 1), x.new_zeros(())
    kept = needed = 0
    went_dense = False
    if blocks and blocks[0][1] - blocks[0][0] > _PROBE_ROWS:  # probe whether this pass screens
        (a, b), rest = blocks[0], list(blocks[1:])
        blocks = [(a, a + _PROBE_ROWS), (a + _PROBE_ROWS, b), *rest]
    for i, (start, stop) in enumerate(blocks):
        x1 = _centred_with_ones(x[start:stop], screen.center, ws)
        if i > 0 and went_dense:  # the probe went dense: so do the other blocks
            ell, gathered = screen.dense_log_joint_t(x1[:, :d], ws), None
        else:
            ell, gathered = screen.log_joint_t(x1, ws)
            went_dense = gathered is None
        kept += ell.numel() if gathered is None else sum(len(xj) for _, _, xj in gathered)
        top = ell.amax(0)
        needed += int((ell >= top - MARGIN).sum())
        resp_t = ell.sub_(top).exp_()
        total = resp_t.sum(0)
        resp_t.div_(total)
        lse = top.add_(total.log_())
        if w is not None:
            resp_t.mul_(w[start:stop])
            lse.mul_(w[start:stop])
        ll += lse.sum()
        if gathered is None:  # cache-sized row chunks: K passes over each
            work = ws((_DENSE_ROWS, d + 1), x1, "s_exact")
            for a in range(0, len(x1), _DENSE_ROWS):
                r = resp_t[:, a : a + _DENSE_ROWS].T
                gram += _FULL.second_moments(x1[a : a + _DENSE_ROWS], r, work)
            continue
        for j, idx, xj in gathered:
            root = resp_t[j].index_select(0, idx).sqrt_()
            syrk_(gram[j], torch.mul(xj, root[:, None], out=ws(xj.shape, xj, "s_exact")))
    return gram, ll, kept, needed


def _blocks(n: int, lanes: int, rows: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of equal row blocks of at most ``rows``, a multiple of ``lanes`` of
    them (so that the lanes get equal work)."""
    count = lanes * max(1, math.ceil(n / (lanes * rows)))
    size = max(1, math.ceil(n / count))
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _in_lane(ws, lane: int):
    """``ws`` with the lane's own buffers."""
    return lambda shape, like, slot: ws(shape, like, f"{slot}/{lane}")


def screened_pass(x, w, screen: Screen, policy: ScreenPolicy, ws=_fresh, rows: int | None = None):
    """One fused E-step over ``x`` with the screen; the same return as ``MixtureEM._pass``.

    Row blocks are shared among lanes (Python threads with serial torch and BLAS:
    :func:`~probpath.likelihood._blas.serial_lanes`); the lanes' sums are added in lane
    order, so a result depends on the thread count only through summation order
    (round-off), never on scheduling.

    Args:
        x: ``(N, d)`` data; w: ``(N,)`` sample weights or ``None``.
        screen: the :class:`Screen` of the current parameters.
        policy: the :class:`ScreenPolicy`, told the fraction of pairs kept.
        ws: ``ws(shape, like, slot)`` -> a reused buffer (``MixtureEM._workspace``; large
            fresh arrays cost page faults on every pass).
        rows: most rows per block (default :data:`ROWS`).

    Returns:
        ``({"S2": (K, d, d), "S1": (K, d)}, N_k (K,), Σ_n w_n ln p(x_n), Σ_n w_n)``, the
        statistics about ``screen.center``.
    """

    def job(lane: int, lanes: int) -> tuple:
        blocks = _blocks(x.shape[0], lanes, rows or ROWS)[lane::lanes]
        return _accumulate(x, w, screen, blocks, _in_lane(ws, lane))

    with serial_lanes() as run:
        parts = run(job)
    gram, ll, kept, needed = (sum(values[1:], values[0]) for values in zip(*parts))
    symmetrize_upper_(gram)  # syrk_ filled the upper triangles
    policy.record(kept, needed, x.shape[0] * screen.log_c.shape[0], screen.directions)
    total_w = w.sum() if w is not None else x.new_tensor(float(x.shape[0]))
    s2, s1, nk = gram[:, :-1, :-1], gram[:, :-1, -1], gram[:, -1, -1]
    return {"S2": s2.contiguous(), "S1": s1.contiguous()}, nk.contiguous(), ll, total_w


def screened_labels(
    x: torch.Tensor, screen: Screen, ws=_fresh, rows: int | None = None
) -> torch.Tensor:
    """The most probable component of each row of ``x`` ``(N, d)``, ``(N,)``: the screen with
    margin 0 keeps every pair whose upper bound reaches the row's best exact value, so the
    argmax is among the exact ones. Lanes as in :func:`screened_pass`."""

    def job(lane: int, lanes: int) -> list[tuple[int, torch.Tensor]]:
        lws = _in_lane(ws, lane)
        # argmax at once: each block's log-joint lives in the same reused buffer
        return [
            (
                a,
                screen.log_joint_t(_centred_with_ones(x[a:b], screen.center, lws), lws, 0.0)[
                    0
                ].argmax(0),
            )
            for a, b in _blocks(x.shape[0], lanes, rows or ROWS)[lane::lanes]
        ]

    with serial_lanes() as run:
        parts = sorted((item for part in run(job) for item in part), key=lambda item: item[0])
    return torch.cat([labels for _, labels in parts])
