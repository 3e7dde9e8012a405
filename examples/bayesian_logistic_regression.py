"""Bayesian logistic regression by black-box mean-field VI (survey §1.1.5, Eq. 14).

The posterior over the weights of a logistic regression has no closed form. ``MeanFieldVI``
only needs the log-joint ``ln p(y, w | X) = sum_n ln sigmoid(y_n x_n^T w) + ln N(w | 0,
tau^2 I)`` and returns a diagonal-Gaussian approximation ``q(w)``. We compare its posterior
predictive ``p(y = 1 | x) = E_q[sigmoid(x^T w)]`` with scikit-learn's L2-regularised
logistic regression (the MAP estimate under the same prior: ``C = tau^2``) on the breast
cancer data set shipped with scikit-learn.

Run::

    python examples/bayesian_logistic_regression.py [--steps 2000] [--out DIR]

With ``--out`` it also writes ``elbo.png`` (the Monte Carlo ELBO per step) there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from probpath.likelihood.variational import MeanFieldVI

__all__ = ["main"]


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Fit, compare with scikit-learn, print a report; returns the metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=16, help="Monte Carlo draws per step")
    parser.add_argument("--prior-std", type=float, default=1.0, help="tau")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    data = load_breast_cancer()
    x_tr, x_te, y_tr, y_te = train_test_split(
        data.data, data.target, test_size=0.25, random_state=args.seed, stratify=data.target
    )
    scaler = StandardScaler().fit(x_tr)
    x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)

    def design(x: np.ndarray) -> torch.Tensor:  # add the intercept column
        return torch.from_numpy(np.hstack([x, np.ones((len(x), 1))]))

    a_tr, a_te = design(x_tr), design(x_te)
    sign = torch.from_numpy(2.0 * y_tr - 1.0)  # labels in {-1, +1}
    tau = args.prior_std

    def log_joint(w: torch.Tensor) -> torch.Tensor:  # w: (S, D) -> (S,)
        log_lik = F.logsigmoid(sign * (w @ a_tr.T)).sum(-1)
        return log_lik - 0.5 * (w**2).sum(-1) / tau**2

    vi = MeanFieldVI(
        log_joint,
        a_tr.shape[1],
        n_samples=args.samples,
        steps=args.steps,
        lr=0.05,
        init_std=0.1,
        generator=torch.Generator().manual_seed(args.seed),
    ).fit()

    # posterior predictive by Monte Carlo over q(w)
    w_draws = vi.sample_posterior(2000, generator=torch.Generator().manual_seed(args.seed + 1))
    p_vi = torch.sigmoid(a_te @ w_draws.T).mean(1).numpy()

    sk = LogisticRegression(C=tau**2, max_iter=5000).fit(x_tr, y_tr)
    p_sk = sk.predict_proba(x_te)[:, 1]

    def log_loss(p: np.ndarray) -> float:
        p = np.clip(p, 1e-12, 1 - 1e-12)
        return float(-np.mean(y_te * np.log(p) + (1 - y_te) * np.log(1 - p)))

    metrics = {
        "vi_accuracy": float(np.mean((p_vi > 0.5) == y_te)),
        "sklearn_accuracy": float(np.mean((p_sk > 0.5) == y_te)),
        "vi_log_loss": log_loss(p_vi),
        "sklearn_log_loss": log_loss(p_sk),
        "final_elbo": float(vi.elbo_history_[-200:].mean()),
    }
    print(f"{'':22s}{'mean-field VI':>15s}{'sklearn MAP':>15s}")
    print(f"{'test accuracy':22s}{metrics['vi_accuracy']:15.3f}{metrics['sklearn_accuracy']:15.3f}")
    print(f"{'test log-loss':22s}{metrics['vi_log_loss']:15.3f}{metrics['sklearn_log_loss']:15.3f}")
    print(f"ELBO (mean of last 200 steps): {metrics['final_elbo']:.2f}")
    names = list(data.feature_names) + ["(intercept)"]
    top = torch.argsort(vi.mean_.abs(), descending=True)[:6]
    coef = np.append(sk.coef_[0], sk.intercept_)
    print("\nlargest weights: posterior mean ± std   (sklearn MAP)")
    for i in top.tolist():
        print(f"  {names[i]:24s} {vi.mean_[i]:+7.3f} ± {vi.std_[i]:.3f}   ({coef[i]:+7.3f})")

    if args.out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        args.out.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot(vi.elbo_history_.numpy(), lw=0.6)
        ax.set_xlabel("step")
        ax.set_ylabel("Monte Carlo ELBO")
        ax.set_ylim(np.percentile(vi.elbo_history_.numpy(), [2, 100]) + [-5, 5])
        fig.tight_layout()
        fig.savefig(args.out / "elbo.png", dpi=120)
        print(f"wrote {args.out / 'elbo.png'}")
    return metrics


if __name__ == "__main__":
    main()
