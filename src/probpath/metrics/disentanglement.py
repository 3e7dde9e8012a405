"""The beta-VAE / Factor-CLS disentanglement score (Higgins et al. 2017; the survey's Table 4).

Protocol (one *vote* = one training or test point of a linear classifier):

1. draw the fixed factor ``k`` uniformly from the ``K`` factors (or from ``fixed_factors``:
   Higgins et al. fix one of dSprites' x, y, scale, rotation, never shape);
2. draw ``L`` pairs of factor vectors ``(v1_l, v2_l)``, every factor independent and uniform on
   its grid except factor ``k``, which the two members of a pair share
   (``v2_l[k] = v1_l[k]``);
3. render and encode both images, ``z = encode(render(v))`` (a VAE's posterior mean);
4. the vote is ``(mean_l |z1_l - z2_l|, k)``: the coordinates that code factor ``k`` alone are
   zero on average, the others are not.

A linear classifier (multinomial logistic regression on the raw votes, scikit-learn's
``LogisticRegression`` as disentanglement_lib's ``beta_vae_sklearn``, the low-capacity
classifier of Higgins et al.) is trained on ``n_train`` votes and scored on ``n_test`` fresh
votes; the score is the test accuracy. Chance is ``1 / K`` exactly (``K`` the number of
factors a vote may fix): when the codes carry no information about the factors, each test
label is uniform and independent of the trained classifier's prediction.

``standardize=True`` scales every vote coordinate to unit variance first. Not the paper's: it
lifts unused latents' tiny differences to the size of used ones, so a collapsed encoder can
score far above chance (benchmarks/README.md, "Disentanglement on shapes2d": a VAE with 0.25
nats of KL per image scored 88 % standardised, 25 % = chance raw, on four factors).

Defaults (``n_pairs=64`` as Higgins et al.; ``n_train=1000``, ``n_test=500`` instead of
disentanglement_lib's 10,000 / 5,000 so that a CPU run encodes 192,000 images, not 1.9
million) keep the binomial standard error of the score below
``sqrt(0.25 / 500) = 2.2`` points.

References:
    Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
    Framework", ICLR 2017, §3 and Appendix A.4.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from probpath.core.validation import check_positive_int

__all__ = ["FactorCLSResult", "factor_cls_votes", "factor_cls_score"]


@dataclass(frozen=True)
class FactorCLSResult:
    """Test accuracy of the vote classifier and the protocol that produced it.

    Attributes:
        accuracy: test accuracy in ``[0, 1]`` (the score; Table 4 reports it in percent).
        train_accuracy: accuracy on the training votes.
        chance: ``1 / K``.
        std_error: binomial standard error of ``accuracy``, ``sqrt(a (1 - a) / n_test)``.
        n_pairs, n_train, n_test: the protocol.
    """

    accuracy: float
    train_accuracy: float
    chance: float
    std_error: float
    n_pairs: int
    n_train: int
    n_test: int


def _check_sizes(factor_sizes: Sequence[int]) -> torch.Tensor:
    sizes = [int(k) for k in factor_sizes]
    if len(sizes) < 2 or any(k < 2 for k in sizes):
        raise ValueError(
            f"factor_sizes must list >= 2 factors, each with >= 2 values; got {list(factor_sizes)}"
        )
    return torch.tensor(sizes)


def _check_fixed(fixed_factors: Sequence[int] | None, n_factors: int) -> torch.Tensor:
    if fixed_factors is None:
        return torch.arange(n_factors)
    fixed = [int(k) for k in fixed_factors]
    if (
        len(fixed) < 2
        or len(set(fixed)) != len(fixed)
        or not all(0 <= k < n_factors for k in fixed)
    ):
        raise ValueError(
            f"fixed_factors must list >= 2 distinct factor indices in [0, {n_factors}); "
            f"got {list(fixed_factors)}"
        )
    return torch.tensor(sorted(fixed))


@torch.no_grad()
def factor_cls_votes(
    encode: Callable[[torch.Tensor], torch.Tensor],
    render: Callable[[torch.Tensor], torch.Tensor],
    factor_sizes: Sequence[int],
    n_votes: int,
    *,
    n_pairs: int = 64,
    batch_votes: int = 16,
    fixed_factors: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Votes of steps 1-4 of the protocol (module docstring).

    Args:
        encode: ``x -> z`` of shape ``(batch, d)`` (e.g. a VAE's posterior mean).
        render: factor indices ``(batch, K)`` int64 -> data ``(batch, ...)`` (e.g.
            :func:`probpath.data.render_shapes2d`).
        factor_sizes: number of values of each of the ``K`` factors.
        n_votes: number of votes.
        n_pairs: ``L``, pairs averaged per vote.
        batch_votes: votes encoded together (``2 * n_pairs * batch_votes`` images at once).
        fixed_factors: the factors a vote may fix (its possible labels); all ``K`` when
            ``None``. The other factors still vary within every pair (Higgins et al. fix one
            of dSprites' four factors position x, position y, scale, rotation, never shape).
        generator: for the fixed factors and the pairs.

    Returns:
        ``z_diff`` ``(n_votes, d)`` float64 and the fixed factors ``(n_votes,)`` int64.
    """
    sizes = _check_sizes(factor_sizes)
    n_votes = check_positive_int(n_votes, "n_votes")
    n_pairs = check_positive_int(n_pairs, "n_pairs")
    batch_votes = check_positive_int(batch_votes, "batch_votes")
    n_factors = len(sizes)
    choices = _check_fixed(fixed_factors, n_factors)
    labels = choices[torch.randint(0, len(choices), (n_votes,), generator=generator)]
    diffs = []
    for start in range(0, n_votes, batch_votes):
        k = labels[start : start + batch_votes].repeat_interleave(n_pairs)  # (m,)
        m = len(k)
        u1, u2 = torch.rand(2, m, n_factors, generator=generator)
        v1 = (u1 * sizes).long().clamp_max(sizes - 1)
        v2 = (u2 * sizes).long().clamp_max(sizes - 1)
        rows = torch.arange(m)
        v2[rows, k] = v1[rows, k]
        z = encode(render(torch.cat([v1, v2])))
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[0] != 2 * m:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(
                f"encode must return codes of shape (batch, d) = ({2 * m}, d); got {shape}"
            )
        d = (z[:m] - z[m:]).abs().double()
        diffs.append(d.reshape(-1, n_pairs, d.shape[1]).mean(1))
    return torch.cat(diffs), labels


def factor_cls_score(
    encode: Callable[[torch.Tensor], torch.Tensor],
    render: Callable[[torch.Tensor], torch.Tensor],
    factor_sizes: Sequence[int],
    *,
    n_pairs: int = 64,
    n_train: int = 1000,
    n_test: int = 500,
    batch_votes: int = 16,
    fixed_factors: Sequence[int] | None = None,
    standardize: bool = False,
    generator: torch.Generator | None = None,
) -> FactorCLSResult:
    """The Factor-CLS score of the codes ``encode(render(v))`` (Higgins et al. 2017).

    Args:
        encode, render, factor_sizes, n_pairs, batch_votes, fixed_factors, generator: see
            :func:`factor_cls_votes`.
        n_train: training votes of the linear classifier.
        n_test: test votes (the score's binomial s.e. is at most ``0.5 / sqrt(n_test)``).
        standardize: scale each vote coordinate to unit variance before the classifier (the
            variant of earlier sessions; ``False``, the default: the raw votes, as
            disentanglement_lib's ``beta_vae_sklearn``).

    Returns:
        :class:`FactorCLSResult`.

    >>> sizes = (3, 4)
    >>> perfect = factor_cls_score(lambda z: z, lambda v: v.double(), sizes,
    ...                            n_pairs=8, n_train=100, n_test=100,
    ...                            generator=torch.Generator().manual_seed(0))
    >>> perfect.accuracy
    1.0
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_train = check_positive_int(n_train, "n_train")
    n_test = check_positive_int(n_test, "n_test")
    opts = {
        "n_pairs": n_pairs,
        "batch_votes": batch_votes,
        "fixed_factors": fixed_factors,
        "generator": generator,
    }
    x_train, y_train = factor_cls_votes(encode, render, factor_sizes, n_train, **opts)
    x_test, y_test = factor_cls_votes(encode, render, factor_sizes, n_test, **opts)
    steps = [StandardScaler()] if standardize else []
    classifier = make_pipeline(*steps, LogisticRegression(max_iter=2000))
    if len(torch.unique(y_train)) < 2:
        raise ValueError(f"n_train={n_train} votes drew a single factor; raise n_train")
    classifier.fit(x_train.numpy(), y_train.numpy())
    accuracy = float(classifier.score(x_test.numpy(), y_test.numpy()))
    return FactorCLSResult(
        accuracy=accuracy,
        train_accuracy=float(classifier.score(x_train.numpy(), y_train.numpy())),
        chance=1.0 / len(_check_fixed(fixed_factors, len(factor_sizes))),
        std_error=math.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / n_test),
        n_pairs=int(n_pairs),
        n_train=n_train,
        n_test=n_test,
    )
