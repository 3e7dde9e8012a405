"""The four tables as data: one :class:`TableSpec` per table, one :class:`RowSpec` per row.

A row names a catalog entry (``probpath info``) and how it is run; adding a row is one line.
A row whose entry is not in the build is kept and printed as "pending: entry not in this
build". ``published`` is the survey's number for the closest method, with its table
(Tables 1–4 of the survey, CIFAR-10 / ImageNet / 2D Shapes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RowSpec", "TableSpec", "Budget", "TABLES", "BUDGETS", "KINDS", "budget_from"]

#: How a row is measured: train + sample + feature metrics; a sampler on another row's trained
#: model; held-out bits/dim; the Factor-CLS disentanglement score.
KINDS = ("sample", "solver", "bpd", "factor_cls")


@dataclass(frozen=True)
class RowSpec:
    """One row of a survey table.

    Attributes:
        label: the row's name in the table (unique within its table).
        entry: catalog name of the model.
        kind: one of :data:`KINDS`.
        options: constructor overrides (``--set``), e.g. ``{"network": "dit"}``.
        data: ``"image"`` / ``"vector"`` to override the entry's data kind (image networks).
        sampler, steps: the sampler and its steps (default: the model's own).
        guidance: classifier-free guidance weight (conditional rows; NFE printed ``N×2``).
        conditional: train on the labels (``num_classes`` = the data's classes).
        base: for ``kind="solver"``: the label of the row whose trained model is reused.
        published: the survey's value for the closest method, e.g. ``"EDM: 35 NFE, FID 2.01"``.
    """

    label: str
    entry: str
    kind: str = "sample"
    options: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    sampler: str | None = None
    steps: int | None = None
    guidance: float | None = None
    conditional: bool = False
    base: str | None = None
    published: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"row {self.label!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if (self.kind == "solver") != (self.base is not None):
            raise ValueError(f"row {self.label!r}: a 'solver' row (only) needs base=<row label>")


@dataclass(frozen=True)
class TableSpec:
    """One table: its data set, columns (keys of :data:`~probpath.survey.columns.COLUMNS`)
    and rows; ``note`` says what it is and how it differs from the survey's."""

    number: int
    title: str
    dataset: str
    columns: tuple[str, ...]
    rows: tuple[RowSpec, ...]
    note: str = ""
    noise_floor: bool = True


@dataclass(frozen=True)
class Budget:
    """How much compute each row gets.

    Attributes:
        name: "quick", "standard" or "<seconds>s".
        train_seconds: training seconds per model (the Trainer's time budget).
        n_eval: samples drawn per row and held-out points they are scored against.
        n_nll: held-out points whose bits/dim are computed (Table 4).
        factor_votes: training and test votes of the Factor-CLS classifier.
        factor_images: shapes2d images the Factor-CLS VAEs train on.
        factor_seconds: training seconds of each Factor-CLS VAE.
        seeds: training seeds when ``--seeds`` is not given.
    """

    name: str
    train_seconds: float
    n_eval: int
    n_nll: int
    factor_votes: int
    factor_images: int
    factor_seconds: float
    seeds: tuple[int, ...]


BUDGETS: dict[str, Budget] = {
    "quick": Budget("quick", 6.0, 500, 64, 300, 4000, 20.0, (0,)),
    # Factor-CLS VAEs: 60 s ~ the benchmark's 2,000 steps at 64×64 (61-65 CPU s, one thread).
    # 60 s per model (10 s until 2026-12-07): docs/protocol.md, "What the budget changes"
    "standard": Budget("standard", 60.0, 500, 100, 500, 10000, 60.0, (0, 1, 2)),
}


def budget_from(spec: str | float) -> Budget:
    """``"quick"``, ``"standard"`` or a number of training seconds per model (a smoke budget:
    200 samples, 32 NLL points, 100 votes, one seed)."""
    text = str(spec).strip().lower()
    if text in BUDGETS:
        return BUDGETS[text]
    try:
        seconds = float(text.removesuffix("s"))
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(
            f"budget must be 'quick', 'standard' or positive seconds per model, got {spec!r}"
        )
    return Budget(f"{seconds:g}s", seconds, 200, 32, 100, 2000, seconds, (0,))


_T1 = "Table 1 (unconditional CIFAR-10, FID)"
_T3 = "Table 3 (class-conditional ImageNet 512×512, FID, params)"
_T4 = "Table 4"
_SOLVER = "ddpm"  # the one trained model the solver rows share

TABLES: dict[int, TableSpec] = {
    1: TableSpec(
        1,
        "Unconditional generation on digits (8×8): families and solvers",
        "digits",
        (
            "nfe",
            "fd_features",
            "precision",
            "recall",
            "train_seconds",
            "train_steps",
            "sample_seconds_per_1k",
        ),
        (
            RowSpec("ddpm", "ddpm", steps=100, published=f"no DDPM row in {_T1}"),
            RowSpec(
                "score-sde",
                "score-sde",
                steps=100,
                published=f"Score SDE (deep): 2000 NFE, 2.20 — {_T1}",
            ),
            RowSpec("edm", "edm", published=f"EDM: 35 NFE, 2.01 — {_T1}"),
            RowSpec("ldm", "ldm", published=f"LSGM (latent): 138 NFE, 2.10 — {_T1}"),
            RowSpec("latent-cfm", "latent-cfm", published=f"no latent flow row in {_T1}"),
            RowSpec("cfm", "cfm", published=f"Flow Matching: 142 NFE, 6.35 — {_T1}"),
            RowSpec("ot-cfm", "ot-cfm", published=f"OT-CFM: 1000 NFE, 3.57 — {_T1}"),
            RowSpec("rectified-flow", "rectified-flow", published=f"no 1-RF row in {_T1}"),
            RowSpec(
                "2-rectified @1",
                "rectified-distillation",
                published=f"2-Rectified Flow: 1 NFE, 4.85 — {_T1}",
            ),
            RowSpec(
                "consistency-fm @2",
                "consistency-fm",
                options={"segments": 2},
                published=f"Consistency-FM: 2 NFE, 5.34 — {_T1}",
            ),
            RowSpec("gan", "gan", published=f"StyleGAN-XL: 1 NFE, 1.52 — {_T1}"),
            RowSpec("vae", "vae", published=f"NVAE: 1 NFE, 23.49 — {_T1}"),
            RowSpec(
                "gaussian (fitted)",
                "gaussian",
                published=f"no baseline row in {_T1}; the floor every model here should beat",
            ),
            RowSpec(
                "ddpm + DPM-Solver-2",
                "ddpm",
                "solver",
                sampler="dpm_solver_2",
                steps=5,
                base=_SOLVER,
                published=f"DPM-Solver: 10 NFE, 4.70 — {_T1}",
            ),
            RowSpec(
                "ddpm + DPM-Solver++(2M)",
                "ddpm",
                "solver",
                sampler="dpmpp_2m",
                steps=10,
                base=_SOLVER,
                published=f"DPM-Solver++: 10 NFE, 2.91 — {_T1}",
            ),
            RowSpec(
                "ddpm + UniPC",
                "ddpm",
                "solver",
                sampler="unipc",
                steps=10,
                base=_SOLVER,
                published=f"no UniPC row (DPM-Solver-v3: 10 NFE, 2.51) — {_T1}",
            ),
        ),
        note=(
            "ddpm and score-sde sample with their own samplers cut to 100 steps (the CPU "
            "budget; the survey's score SDE used 2000). The solver rows reuse the `ddpm` row's "
            "trained model (same seed) with another sampler at 10 network "
            "evaluations (DPM-Solver-2: 5 steps of 2)."
        ),
    ),
    2: TableSpec(
        2,
        "Class-conditional generation on digits (8×8): UNet vs DiT vs SiT with guidance",
        "digits",
        ("nfe", "params", "fd_features", "precision", "recall", "class_accuracy", "train_steps"),
        (
            RowSpec(
                "UNet (DDPM)",
                "ddpm-unet",
                conditional=True,
                sampler="dpmpp_2m",
                steps=20,
                guidance=1.0,
                published="ADM: 250 NFE, 2.07 — Table 2 (class-conditional ImageNet 64×64)",
            ),
            RowSpec(
                "UNet (CFM)",
                "cfm",
                data="image",
                options={"network": {"base_channels": 16}},
                conditional=True,
                sampler="heun",
                steps=10,
                guidance=1.0,
                published="no flow-matching row in Table 2",
            ),
            RowSpec(
                "DiT (DDPM)",
                "ddpm",
                data="image",
                options={"network": "dit"},
                conditional=True,
                sampler="dpmpp_2m",
                steps=20,
                guidance=1.0,
                published="no DiT row in Table 2 (DiT-XL/2 is in Table 3)",
            ),
            RowSpec(
                "SiT (interpolant)",
                "sit",
                data="image",
                options={"network": "dit"},
                conditional=True,
                sampler="heun",
                steps=10,
                guidance=1.0,
                published="no SiT row in Table 2 (SiT-XL is in Table 3)",
            ),
        ),
        note="Labels are learned with label dropout and sampled with classifier-free guidance "
        "w = 1 (two network passes per evaluation: NFE printed N×2).",
    ),
    3: TableSpec(
        3,
        "Class-conditional generation on shapes2d (32×32, label = shape): UNet vs DiT vs SiT",
        "shapes2d",
        ("nfe", "params", "fd_features", "precision", "recall", "class_accuracy", "train_steps"),
        (
            RowSpec(
                "UNet (DDPM)",
                "ddpm-unet",
                conditional=True,
                sampler="dpmpp_2m",
                steps=10,
                guidance=1.0,
                published=f"ADM-G: 250×2 NFE, 7.72, 559 M params — {_T3}",
            ),
            RowSpec(
                "DiT (DDPM)",
                "ddpm",
                data="image",
                options={"network": {"arch": "dit", "patch_size": 4}},
                conditional=True,
                sampler="dpmpp_2m",
                steps=10,
                guidance=1.0,
                published=f"DiT-XL/2: 250×2 NFE, 3.04, 675 M params — {_T3}",
            ),
            RowSpec(
                "SiT (interpolant)",
                "sit",
                data="image",
                options={"network": {"arch": "dit", "patch_size": 4}},
                conditional=True,
                sampler="heun",
                steps=5,
                guidance=1.0,
                published=f"SiT-XL: 250×2 NFE, 2.62, 675 M params — {_T3}",
            ),
        ),
        note="The 'high-resolution' case at CPU scale: 32×32 binary images instead of ImageNet "
        "512×512; DiT / SiT use 4×4 patches (64 tokens). Guidance w = 1 (NFE N×2).",
    ),
    4: TableSpec(
        4,
        "Disentanglement on shapes2d and bits/dim on digits",
        "digits",
        ("factor_cls", "bits_per_dim", "train_seconds", "train_steps"),
        (
            RowSpec("VAE (β = 1)", "vae", "factor_cls", published=f"VAE: 21.77 % — {_T4}"),
            RowSpec("β-VAE (β = 4)", "beta-vae", "factor_cls", published=f"β-VAE: 43.04 % — {_T4}"),
            RowSpec(
                "hierarchical VAE, no flow",
                "hvae",
                "bpd",
                published=f"NVAE w/o flow: 2.93 bits/dim (CIFAR-10) — {_T4}",
            ),
            RowSpec(
                "VAE + flow posterior",
                "flow-vae",
                "bpd",
                published=f"NVAE w/ flow: 2.91 bits/dim (CIFAR-10) — {_T4}",
            ),
            RowSpec("RealNVP", "realnvp", "bpd", published=f"no RealNVP row in {_T4}"),
            RowSpec("MAF", "maf", "bpd", published=f"no MAF row in {_T4}"),
            RowSpec(
                "FFJORD CNF", "cnf", "bpd", published=f"FFJORD: 3.40 bits/dim (CIFAR-10) — {_T4}"
            ),
        ),
        note=(
            "Factor-CLS rows: shapes2d (64×64 as dSprites), Bernoulli-decoder MLP VAE with 10 "
            "latents; votes fix scale, rotation, x or y (chance 25 %), a logistic regression "
            "on raw votes (the protocol of `survey.disentanglement`); bits/dim rows: digits, "
            "dequantised, an upper bound for the VAEs (IWAE bound). The flow-posterior row is a "
            "one-level VAE with a planar-flow posterior, not a hierarchical one."
        ),
        noise_floor=False,
    ),
}
