"""The Trainer's loop against hand-written references: AdamW + clipping + schedule, EMA,
data order and sharding, logging, run-directory contents, estimators, errors."""

from __future__ import annotations

import json
import math

import matplotlib.image
import pytest
import torch
from _trainer_models import Conditional, NoisyDenoiser, Regressor, TwoGroups, toy_data

from probpath.core import Capabilities, Estimator
from probpath.core.serialization import read_json
from probpath.data.dataset import Dataset
from probpath.training import EMA, TrainConfig, Trainer, TrainingError
from probpath.training.sampler import EpochSampler
from probpath.training.schedule import lr_factor
from probpath.training.trainer import _Run


def cfg(**kw):
    base = dict(steps=6, batch_size=16, lr=1e-2, warmup_steps=2, progress="off", log_every=1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize(
    "kw",
    [
        {"steps": 0},
        {"steps": None, "time_budget": None},
        {"batch_size": 0},
        {"lr": -1.0},
        {"lr": float("nan")},
        {"betas": (0.9, 1.0)},
        {"lr_schedule": "linear"},
        {"grad_clip": 0.0},
        {"ema_decay": 1.0},
        {"amp": "fp8"},
        {"progress": "maybe"},
        {"time_budget": -1.0},
        {"ckpt_every": 0},
    ],
)
def test_config_rejects_bad_values(kw):
    with pytest.raises(ValueError, match=next(iter(kw)).split("_")[0]):
        TrainConfig(**kw)


def test_amp_on_cpu_is_refused():
    with pytest.raises(ValueError, match="CUDA"):
        Trainer(cfg(amp="bf16", device="cpu")).fit(Regressor(), toy_data())


def test_lr_schedule_closed_form():
    # warm-up (s+1)/W, then 0.5 (1 + cos(pi (s - W) / (T - W)))
    W, T = 3, 11
    got = [lr_factor(s, warmup_steps=W, total_steps=T, kind="cosine") for s in range(T)]
    want = [(s + 1) / W for s in range(W)] + [
        0.5 * (1 + math.cos(math.pi * (s - W) / (T - W))) for s in range(W, T)
    ]
    assert got == pytest.approx(want, abs=1e-15)
    assert lr_factor(50, warmup_steps=W, total_steps=None, kind="cosine") == 1.0
    assert lr_factor(50, warmup_steps=W, total_steps=T, kind="constant") == 1.0


def test_cosine_follows_the_time_budget():
    # p = seconds used / time budget; with both budgets, the one used up faster sets p
    W = 3
    f = [lr_factor(10, warmup_steps=W, total_steps=None, kind="cosine", time_fraction=q)
         for q in (0.0, 0.25, 1.0, 1.5)]  # fmt: skip
    assert f == pytest.approx([1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.0, 0.0], abs=1e-15)
    assert lr_factor(1, warmup_steps=W, total_steps=None, kind="cosine", time_fraction=0.9) == (
        2 / W
    )  # warm-up first
    both = lr_factor(W + 5, warmup_steps=W, total_steps=W + 10, kind="cosine", time_fraction=0.8)
    assert both == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.8)))
    assert lr_factor(W + 5, warmup_steps=W, total_steps=None, kind="constant",
                     time_fraction=0.8) == 1.0  # fmt: skip


def test_time_budget_decays_the_rate_to_the_end(monkeypatch):
    # a clock that reads one second per optimizer step: a 10 s budget is 10 steps, and the
    # rate at step s (after warm-up) is lr * cos-factor(s / 10)
    monkeypatch.setattr(_Run, "_seconds", lambda self: float(self.step))
    result = Trainer(cfg(steps=None, time_budget=10.0)).fit(Regressor().double(), toy_data())
    assert result.steps == 10
    want = [1e-2 * lr_factor(s, warmup_steps=2, total_steps=None, kind="cosine",
                             time_fraction=s / 10) for s in range(10)]  # fmt: skip
    assert [r["lr"] for r in result.history] == pytest.approx(want, rel=1e-12)
    assert want[-1] < 0.03 * want[2]


def _reference_adamw(model, x, config, steps):
    """The loop written out by hand: sampler order, schedule, clipping, AdamW, EMA."""
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas,
                            weight_decay=config.weight_decay)  # fmt: skip
    ema = [p.detach().clone() for p in model.parameters()]
    sampler = EpochSampler(len(x), config.batch_size, config.seed)
    losses = []
    for s in range(steps):
        idx, _, _ = sampler.next_batch()
        factor = lr_factor(
            s, warmup_steps=config.warmup_steps, total_steps=config.steps, kind=config.lr_schedule
        )
        for g in opt.param_groups:
            g["lr"] = config.lr * factor
        loss = model.loss(x[idx]).mean()
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), config.grad_clip)
        opt.step()
        with torch.no_grad():
            d = min(config.ema_decay, (1 + s) / (10 + s))  # EMA warm-up
            for e, p in zip(ema, model.parameters()):
                e.mul_(d).add_(p, alpha=1 - d)
    return losses, opt, ema


def test_ema_warmup_ramps_the_decay():
    net = torch.nn.Linear(2, 1)
    ema = EMA(net, decay=0.999)
    assert [ema.decay_at(k) for k in (0, 1, 10)] == [0.1, 2 / 11, 11 / 20]
    assert ema.decay_at(10**6) == 0.999 and ema.decay_at(None) == 0.999
    assert EMA(net, decay=0.999, warmup=False).decay_at(0) == 0.999


def test_matches_hand_written_adamw_loop():
    x = toy_data()
    config = cfg(grad_clip=0.05, weight_decay=0.1, ema_decay=0.9, betas=(0.8, 0.99))
    torch.manual_seed(0)
    model = Regressor().double()
    ref = Regressor().double()
    ref.load_state_dict(model.state_dict())
    result = Trainer(config).fit(model, x)
    losses, opt, ema = _reference_adamw(ref, x, config, config.steps)
    assert [r["loss"] for r in result.history] == pytest.approx(losses, rel=1e-12, abs=0)
    for p, q in zip(result.model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    for p, e in zip(result.ema_model.parameters(), ema):
        torch.testing.assert_close(p, e, rtol=1e-12, atol=1e-14)
    lrs = [r["lr"] for r in result.history]
    assert lrs == pytest.approx(
        [config.lr * lr_factor(s, warmup_steps=2, total_steps=6, kind="cosine") for s in range(6)]
    )
    assert result.steps == 6 and result.run_dir is None


def test_ema_recursion_closed_form():
    # after k updates with constant target theta: ema = theta + d^k (ema0 - theta)
    net = torch.nn.Linear(3, 2).double()
    ema = EMA(net, decay=0.7)
    start = [p.detach().clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    for _ in range(5):
        ema.update(net)
    for e, s, p in zip(ema.model.parameters(), start, net.parameters()):
        torch.testing.assert_close(e, p + 0.7**5 * (s - p), rtol=1e-12, atol=1e-12)
    assert not any(p.requires_grad for p in ema.model.parameters())
    with pytest.raises(ValueError, match="ema_decay"):
        EMA(net, 1.5)


def test_fits_the_mean_by_maximum_likelihood():
    # a unit-variance Gaussian's NLL is minimised at the sample mean (Survey §1.1)
    class Mean(Regressor):
        def __init__(self, event_shape=(2,)):
            super().__init__(event_shape)
            self.mu = torch.nn.Parameter(torch.zeros(event_shape, dtype=torch.float64))

        def loss(self, x, cond=None):
            return 0.5 * ((x - self.mu) ** 2).sum(1) + 0.0 * sum(
                p.sum() for p in self.net.parameters()
            )

    x = toy_data(n=128) + torch.tensor([2.0, -1.0], dtype=torch.float64)
    config = cfg(steps=400, batch_size=128, lr=0.05, warmup_steps=0, lr_schedule="constant",
                 ema_decay=None, grad_clip=None)  # fmt: skip
    model = Trainer(config).fit(Mean().double(), x).model
    torch.testing.assert_close(model.mu.detach(), x.mean(0), atol=1e-6, rtol=0)


def test_sampler_epochs_are_permutations_and_resume():
    s = EpochSampler(10, 3, seed=4)
    assert s.batch_size == 3 and s.batches_per_epoch == 3
    seen = [s.next_batch() for _ in range(6)]
    for e in (0, 1):
        rows = torch.cat([idx for idx, ep, _ in seen if ep == e])
        assert len(set(rows.tolist())) == 9  # one epoch: distinct rows, last partial dropped
        assert torch.equal(rows, s.permutation(e)[:9])
    resumed = EpochSampler(10, 3, seed=4, epoch=1, position=1)
    assert all(torch.equal(resumed.next_batch()[0], seen[i][0]) for i in (4, 5))


def test_sampler_shards_like_distributed_sampler():
    n, B, W = 37, 4, 3
    single = EpochSampler(n, W * B, seed=1)
    ranks = [EpochSampler(n, B, seed=1, rank=r, world_size=W) for r in range(W)]
    assert single.batches_per_epoch == ranks[0].batches_per_epoch == 3
    for _ in range(7):  # crosses epochs
        one = single.next_batch()[0]
        parts = [r.next_batch()[0] for r in ranks]
        assert sorted(torch.cat(parts).tolist()) == sorted(one.tolist())
    # a shard is perm[rank::W] after padding the permutation by wrapping (13 rows per rank)
    perm = ranks[0].permutation(0)
    padded = torch.cat([perm, perm[: 13 * W - n]])
    for r in range(W):
        assert torch.equal(ranks[r].shard(0), padded[r::W])


def test_two_optimizer_groups_get_their_own_lr_and_betas():
    model = TwoGroups().double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = cfg(steps=4, warmup_steps=0, lr_schedule="constant", ema_decay=None)
    result = Trainer(config).fit(model, toy_data())
    assert {"d_loss", "g_loss", "grad_norm_generator", "lr_discriminator"} <= set(
        result.history[-1]
    )
    assert result.history[-1]["lr_discriminator"] == pytest.approx(2 * config.lr)
    assert result.history[-1]["lr_generator"] == pytest.approx(config.lr)
    rec = result.history[0]
    assert rec["loss"] == pytest.approx(rec["d_loss"] + rec["g_loss"], rel=1e-12)
    for k, v in model.state_dict().items():
        assert not torch.equal(v, before[k]), f"{k} was not updated"
    assert all(p.grad is None for p in model.parameters())


def test_conditional_models_get_the_rows_labels():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (48,), generator=g)
    x = torch.stack([y.double(), torch.randn(48, generator=g, dtype=torch.float64)], 1)
    model = Conditional().double()
    Trainer(cfg(steps=5)).fit(model, Dataset(x=x, y=y, num_classes=3))
    assert model.seen == 5 * 16
    with pytest.raises(ValueError, match="labels"):
        Trainer(cfg(steps=1)).fit(Conditional().double(), x)


def test_dequantize_adds_one_bin_of_noise():
    # discrete data on levels {0, 1/3, 2/3, 1}: the model sees x + noise within one bin
    levels = torch.tensor([0.0, 1 / 3, 2 / 3, 1.0], dtype=torch.float64)
    x = levels[torch.randint(0, 4, (64, 2), generator=torch.Generator().manual_seed(0))]
    seen = []

    class Spy(Regressor):
        def loss(self, xb, cond=None):
            seen.append(xb.clone())
            return super().loss(xb)

    data = Dataset(x=x, discrete=True, n_levels=4, value_range=(0.0, 1.0))
    Trainer(cfg(steps=2)).fit(Spy().double(), data)
    batch = torch.cat(seen)
    nearest = levels[(batch[..., None] - levels).abs().argmin(-1)]
    assert (batch - nearest).abs().max() <= 1 / 3 + 1e-12
    assert (batch != nearest).all()
    seen.clear()
    Trainer(cfg(steps=2, dequantize=False)).fit(Spy().double(), data)
    assert all(torch.isin(b, levels).all() for b in seen)
    with pytest.raises(ValueError, match="value_range"):
        Trainer(cfg(steps=2)).fit(Spy().double(), Dataset(x=x, discrete=True))
    with pytest.raises(ValueError, match="grid"):
        Trainer(cfg(steps=2)).fit(Spy().double(), Dataset(x=x + 0.1, discrete=True, n_levels=4,
                                                          value_range=(0.0, 1.0)))  # fmt: skip


def test_run_directory_contents(tmp_path):
    out = tmp_path / "run"
    config = cfg(steps=4, log_every=2, ckpt_every=2, sample_every=2, n_plot_samples=32,
                 out_dir=str(out))  # fmt: skip
    model = NoisyDenoiser().double()
    result = Trainer(config).fit(model, toy_data())
    assert result.run_dir == out
    meta = read_json(out / "config.json")
    assert meta["class"] == "NoisyDenoiser" and meta["config"] == {"event_shape": [2], "hidden": 16}
    assert meta["train"]["steps"] == 4 and meta["train"]["out_dir"] == str(out)
    for name in ("model.safetensors", "ema.safetensors", "trainer_state.safetensors",
                 "trainer_state.json"):  # fmt: skip
        assert (out / name).is_file(), name
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4] and lines == result.history
    assert {"step", "loss", "lr", "seconds", "epoch", "grad_norm"} <= set(lines[0])
    for step in (2, 4):
        img = matplotlib.image.imread(out / "samples" / f"step_{step:06d}.png")
        assert img.ndim == 3 and img.shape[0] > 100
    state = read_json(out / "trainer_state.json")
    assert state["step"] == 4 and state["sampler"] == {
        "epoch": 0, "position": 4, "seed": 0, "world_size": 1
    }  # fmt: skip


def test_probpath_load_reads_a_run_directory(tmp_path):
    import probpath
    from probpath.catalog import CATALOG, build_model

    entry = next((e for e in CATALOG if not e.cls.capabilities.estimator), None)
    if entry is None:
        pytest.skip("no neural model in the catalog yet")
    shape = (2,) if entry.data in ("vector", "any") else (1, 8, 8)
    conditional = entry.cls.capabilities.conditional
    model = build_model(entry, shape, 3 if conditional else None, test=True)
    x = torch.rand(32, *shape) * 2 - 1
    data = Dataset(x=x, y=torch.arange(32) % 3 if conditional else None, num_classes=3)
    config = cfg(steps=2, batch_size=8, out_dir=str(tmp_path / "run"), device="cpu")
    result = Trainer(config).fit(model, data)
    loaded = probpath.load(result.run_dir)
    for (k, v), (k2, v2) in zip(result.model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_time_budget_stops_training():
    config = cfg(steps=None, time_budget=0.3, lr_schedule="constant")
    result = Trainer(config).fit(Regressor().double(), toy_data())
    assert result.steps >= 1 and result.seconds >= 0.3
    assert result.history[-1]["step"] == result.steps


class _MeanEstimator(Estimator):
    capabilities = Capabilities(route="likelihood", section="§1.1", estimator=True)

    def __init__(self, shrink=0.0):
        self.shrink = shrink

    def fit(self, x):
        self.mean_ = (1 - self.shrink) * x.mean(0)
        self.n_ = int(len(x))
        return self


def test_estimators_are_fitted_and_saved(tmp_path):
    x = toy_data()
    result = Trainer(cfg(out_dir=str(tmp_path / "est"))).fit(_MeanEstimator(0.5), x)
    torch.testing.assert_close(result.model.mean_, 0.5 * x.mean(0))
    assert result.steps == 0 and result.ema_model is None and result.seconds >= 0
    meta = read_json(tmp_path / "est" / "config.json")
    assert meta["state"] == {"n_": 64} and meta["train"]["batch_size"] == 16


def test_non_finite_loss_names_step_batch_and_checkpoint(tmp_path):
    model = Regressor().double()
    model.nan_at_call = 5
    with pytest.raises(TrainingError, match="step 5, epoch 1, batch 1.*none saved") as err:
        Trainer(cfg(steps=8)).fit(model, toy_data())
    assert err.value.step == 5 and err.value.batch == 1 and err.value.checkpoint is None
    model = Regressor().double()
    model.nan_at_call = 5
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=f"step 5.*checkpoint: {out}") as err:
        Trainer(cfg(steps=8, ckpt_every=2, out_dir=str(out))).fit(model, toy_data())
    assert err.value.checkpoint == out
    assert read_json(out / "trainer_state.json")["step"] == 4


def test_bad_model_and_data_are_refused():
    with pytest.raises(TypeError, match="Model or Estimator"):
        Trainer(cfg()).fit(torch.nn.Linear(2, 2), toy_data())
    bad = toy_data()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        Trainer(cfg()).fit(Regressor().double(), bad)

    class WrongShape(Regressor):
        def loss(self, x, cond=None):
            return super().loss(x).sum()

    with pytest.raises(ValueError, match=r"shape \(16,\)"):
        Trainer(cfg()).fit(WrongShape().double(), toy_data())


def test_progress_bar_when_asked_lines_in_a_log(capsys):
    Trainer(cfg(steps=3, progress="on")).fit(Regressor().double(), toy_data())
    err = capsys.readouterr().err
    assert "train" in err and "\r" in err  # tqdm redraws its bar in place
    Trainer(cfg(steps=3, progress="auto")).fit(Regressor().double(), toy_data())
    err = capsys.readouterr().err  # pytest's captured stderr is not a TTY: plain lines
    assert "\r" not in err and err.splitlines()[-1].startswith("train: 3/3 steps (100 %)")
    Trainer(cfg(steps=3, progress="off")).fit(Regressor().double(), toy_data())
    assert capsys.readouterr().err == ""
