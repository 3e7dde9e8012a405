"""A screened EM pass for full-covariance Gaussian mixtures in high dimension.

With well-separated components most responsibilities ``γ_nk`` are far below float64
resolution, yet the dense E- and M-steps spend ``2 N K d^2`` flops on every pair. The screen
finds the pairs that can matter and spends the ``d^2`` work only there:

1. **A lower bound on every distance.** ``r_nk = ||(x_n - mu_k) U_k||`` (the whitened
   distance of :meth:`~probpath.likelihood.covariance._Full.whitening`) is at least its
   length along any orthonormal directions ``Q_k``: ``L_nk = ||(x_n - mu_k) U_k Q_k|| <=
   r_nk``. ``Q_k`` spans the whitened differences ``(mu_j - mu_k) U_k`` to the ``m = min(K
   - 1, d / 4)`` nearest means, where separation shows; all ``K`` blocks ``U_k Q_k`` make
   one ``(n, d) @ (d, K m)`` product, ``m / d`` of the dense one. Rounding is covered: a
   length-``d`` dot product is within ``γ_d |a|^T |b|`` of the exact one, ``γ_d = d u / (1 -
   d u)`` (Higham, *Accuracy and Stability of Numerical Algorithms*, 2002, §3.1), which
   with Cauchy-Schwarz bounds the error of ``L_nk`` by ``γ_{d+2} (||x_n|| s_k + t_k)``
   (``s_k``, ``t_k`` from the norms of ``U_k``, ``U_k Q_k`` and ``mu_k``); twice that, and a
   relative ``1e-10`` for ``Q_k`` being orthonormal only to round-off, are subtracted.
2. **An exact anchor.** Each row's candidate, the ``k`` with the largest upper bound
   ``ln π_k + c_k - L_nk / 2`` (all of them on a tie), gets its exact log-joint ``ℓ_n*``.
   A block where over half of the pairs lie within ``margin`` of their row's largest upper
   bound is computed dense instead: those pairs would be kept anyway.
3. **The cut.** A pair whose upper bound ``ln π_k + c_k - L_nk / 2`` is more than ``margin``
   nats below ``ℓ_n*`` has ``γ_nk < e^{-margin}``; it is skipped. The others get their exact
   float64 ``ℓ_nk``, and the M-step's ``S2_k = Σ_n γ_nk x_n x_n^T`` is summed over the same
   rows (``(N_k', d) @ (d, d)`` per component).

Skipping changes each ``ln p(x_n)`` by at most ``K e^{-margin}`` (``~1e-21`` relative at the
default 50 nats) and each responsibility by less than ``e^{-margin}``: the fit is the dense
EM's up to float64 round-off. When most pairs are kept (overlapping components) the screen
is overhead; :class:`ScreenPolicy` then switches it off for a while.
"""

from __future__ import annotations

import math

import torch

from probpath.likelihood.covariance import covariance_type

__all__ = ["Screen", "ScreenPolicy", "screened_pass"]

#: A skipped pair's responsibility is provably below ``e^{-MARGIN}``.
MARGIN = 50.0
_U64 = 2.0**-53  # float64 unit round-off
_SLACK = 1e-10  # relative: Q_k from a QR factorisation is orthonormal to ~d u, not exactly
_FULL = covariance_type("full")
_DENSE_ROWS = 512  # rows per dense product: its (rows, K d) scratch stays in the cache


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
    return m * _U64 / (1 - m * _U64)


def _screen_directions(means_c, prec_chol, m: int):
    """Per component ``k`` an orthonormal basis ``Q_k`` of the whitened mean differences
    ``(mu_j - mu_k) U_k`` (the ``m`` nearest ``j``). Returns the ``(d, K m)`` matrix of the
    ``U_k Q_k`` side by side, the offsets ``mu_k U_k Q_k`` ``(K m,)``, and the rounding
    terms ``scale``, ``shift`` ``(K,)`` of step 1 (the error of ``L_nk`` is at most
    ``γ (||x_n|| scale_k + shift_k)``)."""
    k = means_c.shape[0]
    blocks = []
    for j in range(k):
        diff = (means_c - means_c[j]) @ prec_chol[j]  # (K, d), row j is zero
        order = torch.argsort(torch.linalg.vector_norm(diff, dim=1))
        q = torch.linalg.qr(diff[order[1 : m + 1]].T).Q  # (d, m) orthonormal columns
        blocks.append(prec_chol[j] @ q)
    w = torch.stack(blocks, 1)  # (d, K, m)
    offsets = torch.stack([means_c[j] @ w[:, j] for j in range(k)])  # (K, m)
    # rounding scales of step 1: ||x|| times ``scale`` plus ``shift`` (see the module)
    scale = torch.linalg.vector_norm(w, dim=(0, 2))
    scale += math.sqrt(m) * torch.linalg.matrix_norm(prec_chol)  # U_k Q_k in floating point
    shift = (
        torch.linalg.vector_norm(offsets, dim=1) + torch.linalg.vector_norm(means_c, dim=1) * scale
    )
    return w.reshape(means_c.shape[1], -1), offsets.reshape(-1), scale, shift


def _fresh(shape, like, slot):
    """A workspace that allocates (for calls outside a fit)."""
    return like.new_empty(shape)


def _upper_log_joint_t(xc, screen, log_c, ws) -> torch.Tensor:
    """``(K, n)`` upper bounds of ``ℓ_nk`` from the partial distances (module, step 1)."""
    w, offsets, scale, shift = screen
    n, k = xc.shape[0], log_c.shape[0]
    y = torch.addmm(offsets, xc, w, beta=-1, out=ws((n, w.shape[1]), xc, "s_y"))
    lower = torch.sum(y.square_().view(n, k, -1), 2, out=ws((n, k), xc, "s_lower")).sqrt_()
    norm = torch.linalg.vector_norm(xc, dim=1, keepdim=True, out=ws((n, 1), xc, "s_norm"))
    err = torch.mul(norm, scale, out=ws((n, k), xc, "s_err")).add_(shift)
    lower.mul_(1 - _SLACK).sub_(err.mul_(2.0 * _gamma(xc.shape[1] + 2))).clamp_min_(0)
    upper = lower.square_().mul_(-0.5).add_(log_c)
    return ws((k, n), xc, "s_upper").copy_(upper.T)


def _exact(ell, rows_of, xc, prec_chol, b, log_c, ws, gathered) -> None:
    """``ell[k, n] = ℓ_nk`` (float64, exact) for the rows where ``rows_of(k)`` is true;
    appends ``(k, rows, x[rows])`` per component to ``gathered`` for the second moments (the
    rows are copied into one reused buffer while it has room)."""
    n, d = xc.shape
    pool = ws((2 * n, d), xc, "s_pool")
    used = sum(len(xj) for _, _, xj in gathered)
    for j in range(ell.shape[0]):
        idx = torch.nonzero(rows_of(j)).reshape(-1)
        m = idx.numel()
        if m == 0:
            continue
        xj = pool[used : used + m] if used + m <= len(pool) else xc.new_empty(m, d)
        used += m if used + m <= len(pool) else 0
        torch.index_select(xc, 0, idx, out=xj)
        y = torch.addmm(b[j], xj, prec_chol[j], beta=-1, out=ws((n, d), xc, "s_exact")[:m])
        ell[j].index_copy_(0, idx, y.square_().sum(1).mul_(-0.5).add_(log_c[j]))
        gathered.append((j, idx, xj))


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
        self.b = whitening[1].view(k, d)
        self.log_weights, self.log_c = log_weights, log_weights + whitening[2]
        most = max(1, min(k - 1, d // 4))
        self.directions = most if directions is None else max(1, min(directions, most))
        self.columns = _screen_directions(means - center, prec_chol, self.directions)

    def log_joint_t(self, xc: torch.Tensor, ws=_fresh) -> tuple[torch.Tensor, list | None]:
        """``(K, n)`` exact ``ℓ_nk = ln π_k + ln N(x_n | mu_k, Sigma_k)`` for the kept pairs
        and ``-inf`` for the skipped ones (``γ_nk < e^{-MARGIN}``), and the kept rows as
        ``(k, rows, xc[rows])``; ``None`` instead when the block was computed dense (more
        than half of its pairs could matter); ``xc`` is centred; ``ws(shape, like, slot)``
        hands out reused buffers."""
        upper = _upper_log_joint_t(xc, self.columns, self.log_c, ws)
        best = upper.amax(0)  # the anchors (ties are all exact: no harm)
        if int((upper >= best - MARGIN).sum()) > 0.5 * upper.numel():
            return self._dense(xc, ws), None  # these pairs are kept whatever the anchors say
        ell = ws(upper.shape, xc, "s_ell").fill_(float("-inf"))
        args, gathered = (xc, self.prec_chol, self.b, self.log_c, ws), []
        _exact(ell, lambda j: upper[j] == best, *args, gathered)
        cut = ell.amax(0).sub_(MARGIN)
        _exact(ell, lambda j: (upper[j] >= cut) & (upper[j] != best), *args, gathered)
        return ell, gathered

    def _dense(self, xc: torch.Tensor, ws) -> torch.Tensor:
        """Every ``ℓ_nk`` ``(K, n)``, by the dense whitened product in cache-sized rows."""
        k, d = self.b.shape
        ell = ws((k, xc.shape[0]), xc, "s_ell").copy_(self.log_weights[:, None])
        work = ws((_DENSE_ROWS, k * d), xc, "s_dense")
        for s in range(0, xc.shape[0], _DENSE_ROWS):
            sub = xc[s : s + _DENSE_ROWS]
            out = ell[:, s : s + len(sub)]
            _FULL.whitened_log_prob_t(sub, self.whitening, out, work[: len(sub)])
        return ell


def screened_pass(x, w, screen: Screen, policy: ScreenPolicy, ws=_fresh, rows: int = 8192):
    """One fused E-step over ``x`` with the screen; the same return as ``MixtureEM._pass``.

    Args:
        x: ``(N, d)`` data; w: ``(N,)`` sample weights or ``None``.
        screen: the :class:`Screen` of the current parameters.
        policy: the :class:`ScreenPolicy`, told the fraction of pairs kept.
        ws: ``ws(shape, like, slot)`` -> a reused buffer (``MixtureEM._workspace``; large
            fresh arrays cost page faults on every pass).
        rows: rows per block.

    Returns:
        ``({"S2": (K, d, d), "S1": (K, d)}, N_k (K,), Σ_n w_n ln p(x_n), Σ_n w_n)``, the
        statistics about ``screen.center``.
    """
    k, d = screen.log_c.shape[0], x.shape[1]
    s2, s1, nk = x.new_zeros(k, d, d), x.new_zeros(k, d), x.new_zeros(k)
    ll = x.new_zeros(())
    kept = needed = 0
    for start in range(0, x.shape[0], rows):
        block = x[start : start + rows]
        xc = torch.sub(block, screen.center, out=ws(block.shape, x, "s_xc"))
        ell, gathered = screen.log_joint_t(xc, ws)
        kept += ell.numel() if gathered is None else sum(len(xj) for _, _, xj in gathered)
        top = ell.amax(0)
        needed += int((ell >= top - MARGIN).sum())
        resp_t = ell.sub_(top).exp_()
        total = resp_t.sum(0)
        resp_t.div_(total)
        lse = top.add_(total.log_())
        if w is not None:
            wc = w[start : start + xc.shape[0]]
            resp_t.mul_(wc)
            lse.mul_(wc)
        ll += lse.sum()
        s1 += resp_t @ xc
        nk += resp_t.sum(1)
        if gathered is None:
            work = ws((_DENSE_ROWS, k * d), xc, "s_dense")
            for s in range(0, xc.shape[0], _DENSE_ROWS):
                sub, r = xc[s : s + _DENSE_ROWS], resp_t[:, s : s + _DENSE_ROWS].T
                s2 += _FULL.second_moments(sub, r, work[: len(sub)])
            continue
        for j, idx, xj in gathered:
            r = resp_t[j].index_select(0, idx)
            weighted = torch.mul(xj, r[:, None], out=ws(xj.shape, xj, "s_exact"))
            s2[j].addmm_(weighted.T, xj)
    policy.record(kept, needed, x.shape[0] * k, screen.directions)
    total_w = w.sum() if w is not None else x.new_tensor(float(x.shape[0]))
    return {"S2": s2, "S1": s1}, nk, ll, total_w
