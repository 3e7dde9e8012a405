"""``probpath.compare``: the data space, held-out NLL against closed forms, and the job's files."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from probpath.catalog import CATALOG, build_model
from probpath.compare import (
    DataSpace,
    TrainOutcome,
    nll_of,
    run_compare,
    sampling_nfe,
    select_entries,
)
from probpath.compare import job as compare_job
from probpath.data import load_dataset
from probpath.data.dataset import Dataset
from probpath.metrics import dequantize

REG = 1e-6  # the catalog's reg_covar for "gaussian"


def _gaussian_mle_logpdf(train: np.ndarray, test: np.ndarray, reg: float) -> np.ndarray:
    """Closed-form Gaussian MLE (biased covariance + reg * I) and its log-density on ``test``."""
    mu = train.mean(0)
    c = train - mu
    cov = c.T @ c / len(train) + reg * np.eye(train.shape[1])
    return multivariate_normal(mu, cov).logpdf(test)


def _discrete_images(n: int = 400, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 17, (1, 1, 2, 2), generator=g).float()
    noise = torch.randint(-3, 4, (n, 1, 2, 2), generator=g).float()
    x = (base + noise).clamp(0, 16)
    return Dataset(x=x, name="tiny-digits", value_range=(0.0, 16.0), discrete=True, n_levels=17)


def test_dataspace_round_trip_and_log_jacobian():
    data = _discrete_images(8)
    space = DataSpace.for_entry(data, "vector")
    assert space.flatten and space.model_event_shape == (4,)
    y = space.to_model(data.x.double())
    assert y.shape == (8, 4)
    assert y.min() >= -1 and y.max() <= 1  # [0, 16] -> [-1, 1]
    torch.testing.assert_close(space.to_data(y), data.x.double())
    # log|det dy/dx| of the map on one flattened sample, by autograd
    jac = torch.autograd.functional.jacobian(
        lambda v: space.to_model(v.reshape(1, 1, 2, 2)).reshape(-1), data.x[0].double().reshape(-1)
    )
    assert math.isclose(torch.linalg.slogdet(jac)[1].item(), space.log_abs_det, rel_tol=1e-12)
    assert space.bin_width == 1.0
    assert DataSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    # unbounded data are left alone
    toy = Dataset(x=torch.randn(5, 2))
    s2 = DataSpace.for_entry(toy, "vector")
    assert (s2.scale, s2.shift, s2.flatten, s2.log_abs_det) == (1.0, 0.0, False, 0.0)


def test_nll_bits_per_dim_matches_closed_form_on_scaled_discrete_data():
    """NLL of a Gaussian fitted in [-1, 1] and reported per dim of the 0..16 data, in bits."""
    data = _discrete_images(600)
    train, test = data.split(0.25, seed=0)
    space = DataSpace.for_entry(data, "vector")
    g = torch.Generator().manual_seed(1)
    x_train = dequantize(train.x.double(), 17, (0.0, 16.0), generator=g)
    x_test = dequantize(test.x.double(), 17, (0.0, 16.0), generator=g)
    model = build_model("gaussian", (4,))
    model.fit(space.to_model(x_train))
    result = nll_of(model, x_test, space)
    # Closed form in the original units: reg_covar I in [-1, 1] is reg / scale^2 there.
    lp = _gaussian_mle_logpdf(
        x_train.reshape(len(x_train), -1).numpy(),
        x_test.reshape(len(x_test), -1).numpy(),
        REG / space.scale**2,
    )
    bin_width = 1.0  # one level of 0..16
    expected = (-lp.mean() / 4 - math.log(bin_width)) / math.log(2)
    assert result.unit == "bits/dim" and result.kind == "exact"
    assert math.isclose(result.value, expected, rel_tol=1e-9)


def _table_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_compare_writes_consistent_tables(tmp_path):
    data = load_dataset("moons", n=400, seed=0)
    names = ["gaussian"] + (["realnvp"] if "realnvp" in CATALOG else [])
    out = tmp_path / "cmp"
    result = run_compare(
        names, data, steps=5, out_dir=out, seed=0, n_eval=60, verbose=False, device="cpu"
    )
    for f in ("table.md", "table.csv", "table.json", "samples.png"):
        assert (out / f).is_file(), f
    assert [r.model for r in result.rows] == names
    assert all(r.status == "ok" for r in result.rows), [r.status for r in result.rows]

    as_json = json.loads((out / "table.json").read_text())
    assert [r["model"] for r in as_json["rows"]] == names
    rows_csv = _table_rows(out / "table.csv")
    md = (out / "table.md").read_text()
    assert md == result.markdown and "Gaussian kernel" in md
    for r, rj, rc in zip(result.rows, as_json["rows"], rows_csv):
        assert r.model in md
        assert rj["nll"] == pytest.approx(r.nll) and float(rc["nll"]) == pytest.approx(r.nll)
        assert rj["swd"] == pytest.approx(r.swd) and float(rc["mmd"]) == pytest.approx(r.mmd)
        assert r.nll_unit == "nats/dim" and r.nll_kind == "exact"
        assert r.swd >= 0 and r.energy is not None and r.sample_seconds_per_1k > 0
        assert r.fd_features is None  # no labelled images: no classifier-feature column
    assert "FD features" not in md

    # The gaussian row's NLL is the closed-form MLE on the same split, scored on the same points.
    train, test = data.split(0.2, seed=0)
    lp = _gaussian_mle_logpdf(train.x.double().numpy(), test.x[:60].double().numpy(), REG)
    assert result.rows[0].nll == pytest.approx(-lp.mean() / 2, rel=1e-9)
    assert result.n_test == 60 and result.settings["steps"] == 5
    if len(names) > 1:
        assert result.rows[1].train_steps == 5


def test_labelled_images_get_a_classifier_feature_frechet_column(tmp_path):
    """On digits the table adds FD in a digit classifier's features (the FID recipe); the
    fitted Gaussian's blurred samples are further from held-out digits there than a second
    draw of real digits is (the training split, scored the same way)."""
    from probpath.metrics import feature_frechet_distance, fit_feature_extractor

    data = load_dataset("digits")
    result = run_compare(["gaussian"], data, out_dir=None, seed=0, n_eval=200, verbose=False)
    row = result.rows[0]
    assert row.status == "ok" and row.fd_features is not None and row.fd_features > 0
    assert "FD features" in result.markdown and "[d]" in result.markdown
    train, test = data.split(0.2, seed=0)
    flat = lambda d: d.x.double().reshape(len(d), -1)  # noqa: E731
    extractor = fit_feature_extractor(
        flat(train), train.y, seed=0, n_levels=17, value_range=(0, 16)
    )
    real = feature_frechet_distance(flat(train)[:200], flat(test)[:200], extractor)
    assert row.fd_features > 2 * real


def test_invalid_models_raise_before_anything_is_written(tmp_path):
    data = load_dataset("moons", n=50)
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="unknown model"):
        run_compare(["no-such-model"], data, out_dir=out, verbose=False)
    with pytest.raises(ValueError, match="twice"):
        run_compare(["gaussian", "gaussian"], data, out_dir=out, verbose=False)
    with pytest.raises(ValueError, match="steps"):
        run_compare(["gaussian"], data, steps=0, out_dir=out, verbose=False)
    assert not out.exists()


def test_select_entries_skips_models_that_cannot_take_the_data():
    data = load_dataset("moons", n=50)
    chosen = select_entries(None, data)
    assert chosen and all(e.in_compare and e.accepts(data.event_shape) for e in chosen)
    image_entries = [e for e in CATALOG if e.data == "image"]
    if image_entries:
        assert image_entries[0] not in chosen
        with pytest.raises(ValueError, match="image data"):
            select_entries([image_entries[0].name], data)
    conditional = [e for e in CATALOG if e.cls.capabilities.conditional and e.accepts((2,))]
    if conditional:
        with pytest.raises(ValueError, match="labels"):
            select_entries([conditional[0].name], data)


def test_a_failing_model_gets_a_failed_row_and_the_job_goes_on(tmp_path, monkeypatch):
    real = compare_job.train_model

    def flaky(model, train, **kw):
        if type(model).__name__ != "GaussianMLE":
            raise RuntimeError("boom")
        return real(model, train, **kw)

    monkeypatch.setattr(compare_job, "train_model", flaky)
    names = ["gaussian"] + [e.name for e in CATALOG if e.name != "gaussian"][:1]
    data = load_dataset("moons", n=200)
    result = run_compare(names, data, steps=2, out_dir=None, n_eval=20, verbose=False)
    assert result.rows[0].status == "ok"
    if len(names) > 1:
        assert result.rows[1].status.startswith("failed: RuntimeError: boom")
        assert "failed" in result.markdown


def test_quick_shares_the_training_budget_equally(monkeypatch):
    neural = [e.name for e in CATALOG if not e.cls.capabilities.estimator and e.accepts((2,))]
    if len(neural) < 2:
        pytest.skip("needs two neural vector models in the catalog")
    budgets = []

    def record(model, train, *, time_budget=None, **kw):
        budgets.append(time_budget)
        model.eval()
        return TrainOutcome(model, 0.0, 0)

    monkeypatch.setattr(compare_job, "train_model", record)
    data = load_dataset("moons", n=100)
    result = run_compare(neural[:2], data, quick=True, out_dir=None, n_eval=10, verbose=False)
    share = compare_job.QUICK_TRAIN_BUDGET / 2
    assert result.settings["quick_budget_per_model"] == pytest.approx(share)
    assert budgets == [pytest.approx(share), pytest.approx(share)]


def test_sampling_nfe_hook():
    """``Model.sampling_nfe`` is read as the model sets it; a one-step model that reports
    nothing counts 1; an estimator (closed-form sampling, no network) is unknown."""
    cfm = build_model("cfm", (2,), test=True)
    assert sampling_nfe(cfm) is None  # nothing sampled yet: unknown, not guessed
    with torch.no_grad():
        cfm.sample(3, generator=torch.Generator().manual_seed(0))
    assert sampling_nfe(cfm) == cfm.sampling_nfe > 0
    gan = build_model("gan", (2,), test=True)
    assert gan.capabilities.one_step and gan.sampling_nfe is None and sampling_nfe(gan) == 1
    assert sampling_nfe(build_model("gaussian", (2,))) is None


def _report_run(tmp_path):
    """A small comparison on moons: an estimator, a flow (exact, one pass) and a path model."""
    data = load_dataset("moons", n=400, seed=0)
    names = ["gaussian", "realnvp", "cfm"]
    out = tmp_path / "cmp"
    result = run_compare(names, data, steps=12, out_dir=out, seed=0, n_eval=60, verbose=False,
                         device="cpu", command="probpath compare --test")  # fmt: skip
    return result, out / "report.html"


def test_report_is_one_self_contained_page(tmp_path):
    import base64
    import html as html_lib
    import re as re_lib

    result, report = _report_run(tmp_path)
    page = report.read_text()
    assert result.files["report.html"] == report
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    assert "NLL nats/dim ↓" in page and "SW₂ ↓ [b]" in page  # units and directions
    assert "noise floor [d]" in page and "probpath compare --test" in page  # a, b, c: metrics
    assert f"<td>{torch.__version__}</td>" in page
    pngs = re_lib.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    # samples grid, densities (gaussian and realnvp: exact and one pass), training curves
    assert len(pngs) == 3
    assert all(base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    for row in result.rows:
        assert f"<td>{html_lib.escape(row.model)}</td>" in page
    # the floor row: training points vs held-out points, the same metrics as the models
    assert result.floor is not None and result.floor["swd"] >= 0
    assert json.loads((tmp_path / "cmp" / "table.json").read_text())["noise_floor"] == (
        pytest.approx(result.floor)
    )


def _chromium() -> str | None:
    import shutil
    import subprocess

    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if shutil.which("apt-get") and os.geteuid() == 0:  # the test set-up installs it
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True,
                       timeout=900, check=False)  # fmt: skip
    return shutil.which("chromium")


def test_report_renders_in_headless_chromium(tmp_path):
    import subprocess

    import matplotlib.image

    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium here (apt-get install chromium failed or is not allowed)")
    _, report = _report_run(tmp_path)
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    url = report.resolve().as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120, check=True).stdout  # fmt: skip
    assert 'data-images-loaded="3/3"' in dom, dom[-2000:]  # every figure decoded
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,2400", url],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    pixels = matplotlib.image.imread(shot)[..., :3]
    # not blank: a white page has every pixel equal; text, tables and plots spread them
    assert pixels.std() > 0.05 and (pixels < 0.5).mean() > 0.005


def test_sampling_plan_fits_the_budget_and_counts_the_default_nfe():
    from probpath.compare.budget import FALLBACK_SAMPLER, plan_sampling

    data = _discrete_images(64)
    space = DataSpace.for_entry(data, "image")
    model = build_model("ddpm-unet", space.model_event_shape, test=True).eval()
    with torch.no_grad():
        model.sample(1, generator=torch.Generator().manual_seed(0))
    full_nfe = model.sampling_nfe  # the default chain's NFE, counted on a full draw
    # no budget: the default sampler, clipped to the data range as the CLI samples a run
    plan = plan_sampling(model, space, 64, 64, None)
    assert plan.options == {"clip_x0": (-1.0, 1.0)} and plan.n_nll == 64 and "steps" in plan.label
    # a budget of 1 µs fits nothing: the fallback with one step (the overshoot is bounded by
    # one NFE), clipped to the range; the NLL on the two points whose cost was timed
    plan = plan_sampling(model, space, 64, 64, 1e-6)
    assert plan.options["sampler"] == FALLBACK_SAMPLER and plan.options["steps"] == 1
    assert plan.options["clip_x0"] == (-1.0, 1.0)  # 0..16 mapped to [-1, 1]
    assert f"default {full_nfe} NFE" in plan.label and plan.n_nll == 2
    # any model with a density gets its NLL points planned: a closed-form Gaussian in 1 µs
    # fits none, so the floor of 2 points; it samples in one pass (no sampler options)
    vector_space = DataSpace.for_entry(data, "vector")
    gaussian = build_model("gaussian", vector_space.model_event_shape)
    y = vector_space.to_model(data.x.double())
    gaussian.fit(y + 0.01 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0)))
    plan = plan_sampling(gaussian, vector_space, 64, 64, 1e-6)
    assert plan.options == {} and plan.n_nll == 2 and plan.label == "NLL on 2 points (budget)"
    assert plan_sampling(gaussian, vector_space, 64, 64, None) == (
        plan_sampling(gaussian, vector_space, 64, 64, 1e9)  # a budget that fits everything
    )
    # an adaptive likelihood solve has no cost bound: under a budget, fixed RK4 steps
    adaptive = build_model("ddpm-unet", space.model_event_shape, test=True, likelihood_steps=None)
    plan = plan_sampling(adaptive, space, 64, 64, 1e-6)
    assert adaptive.likelihood_steps == 8 and "NLL with 8 RK4 steps" in plan.label
