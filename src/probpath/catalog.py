"""The one explicit catalog of model names (used by the CLI, ``compare`` and ``load``).

The library never looks classes up by string anywhere else. Each entry names a class, the
keyword arguments that make the entry (e.g. ``ot-cfm`` is ``FlowMatching(coupling="ot")``),
a faster configuration for ``compare --quick``, and a tiny one for the contract battery.
Adding a model is one ``CatalogEntry`` line below; it then appears in ``probpath info``,
``compare`` and ``tests/contract`` automatically.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CatalogEntry", "CATALOG", "get_entry", "entry_for_class", "build_model", "model_names"]


@dataclass(frozen=True)
class CatalogEntry:
    """One model name.

    Attributes:
        name: the CLI name (``probpath fit NAME``).
        cls: the model class.
        summary: one line for ``probpath info``.
        kwargs: constructor arguments that define this entry.
        quick_kwargs: overrides used by ``compare --quick`` (small and fast).
        test_kwargs: overrides for the contract battery (tiny, seconds on a CPU).
        data: which data the model takes: "vector", "image", "any", or "binary" / "count"
            (vectors of 0/1 values or of non-negative integers, fitted as they are).
        in_compare: whether ``compare`` runs it by default.
    """

    name: str
    cls: type
    summary: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    quick_kwargs: dict[str, Any] = field(default_factory=dict)
    test_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = "any"
    in_compare: bool = True

    def accepts(self, event_shape: tuple[int, ...]) -> bool:
        """Whether this model can be fitted to data of ``event_shape``."""
        if self.data in ("vector", "binary", "count"):
            return len(event_shape) == 1
        if self.data == "image":
            return len(event_shape) == 3
        return True


def _entries() -> list[CatalogEntry]:
    # Imports live here so that `import probpath.catalog` stays cheap and the routes never
    # import the catalog (dependency direction: the catalog sits on top).
    entries: list[CatalogEntry] = []
    # --- classical route (survey §1.1) ---
    from probpath.likelihood.gaussian import GaussianMLE, GaussianScoreMatching

    entries.append(
        CatalogEntry(
            "gaussian",
            GaussianMLE,
            "one Gaussian, closed-form maximum likelihood (full covariance) (§1.1.1)",
            kwargs={"covariance_type": "full", "reg_covar": 1e-6, "dtype": "float64"},
            data="vector",
        )
    )
    entries.append(
        CatalogEntry(
            "gaussian-sm",
            GaussianScoreMatching,
            "one Gaussian by Hyvärinen score matching, closed form (= the MLE) (§1.1.1, Eq. 7)",
            kwargs={"covariance_type": "full", "reg_covar": 1e-6},
            data="vector",
            in_compare=False,  # the same density as `gaussian` (the survey's point)
        )
    )
    from probpath.likelihood.variational import BayesianGaussianMixture

    entries.append(
        CatalogEntry(
            "bgmm",
            BayesianGaussianMixture,
            "Bayesian GMM, mean-field VI with a Dirichlet-process prior (§1.1.5)",
            kwargs={
                "n_components": 10,
                "weight_concentration_prior_type": "dirichlet_process",
                "max_iter": 500,
                "random_state": 0,
                "dtype": "float64",
            },
            quick_kwargs={"n_components": 6, "max_iter": 200},
            test_kwargs={"n_components": 2, "max_iter": 20},
            data="vector",
        )
    )
    from probpath.likelihood.mixture import GaussianMixture

    entries.append(
        CatalogEntry(
            "gmm",
            GaussianMixture,
            "Gaussian mixture by EM, full covariances, exact NLL (§1.1.2-§1.1.4)",
            kwargs={
                "n_components": 10,
                "n_init": 2,
                "max_iter": 300,
                "random_state": 0,
                "dtype": "float64",
            },
            quick_kwargs={"n_components": 8, "n_init": 1},
            test_kwargs={"n_components": 2, "max_iter": 50},
            data="vector",
        )
    )
    from probpath.likelihood.families import BernoulliMixture, PoissonMixture

    entries += [
        CatalogEntry(
            "bernoulli-mixture",
            BernoulliMixture,
            "mixture of independent Bernoullis by EM, for binary vectors (§1.1.3)",
            kwargs={"n_components": 10, "random_state": 0, "dtype": "float64"},
            test_kwargs={"n_components": 2, "max_iter": 50},
            data="binary",
            in_compare=False,  # compare's data are continuous (dequantised)
        ),
        CatalogEntry(
            "poisson-mixture",
            PoissonMixture,
            "mixture of independent Poissons by EM, for count vectors (§1.1.3)",
            kwargs={"n_components": 10, "random_state": 0, "dtype": "float64"},
            test_kwargs={"n_components": 2, "max_iter": 50},
            data="count",
            in_compare=False,
        ),
    ]
    # --- deep likelihood / adversarial routes (§1.2, §1.3, §3.1, §3.2) ---
    from probpath.likelihood.cnf import CNF
    from probpath.likelihood.flows import MAF, PlanarFlow, RadialFlow, RealNVP

    entries += [
        CatalogEntry(
            "planar-flow",
            PlanarFlow,
            "planar normalizing flow, exact NLL via numerical inverse (§3.1, Eq. 52-53)",
            kwargs={"n_layers": 32},
            quick_kwargs={"n_layers": 16},
            test_kwargs={"n_layers": 2},
            data="vector",
        ),
        CatalogEntry(
            "radial-flow",
            RadialFlow,
            "radial normalizing flow, closed-form inverse (§3.1)",
            kwargs={"n_layers": 32},
            quick_kwargs={"n_layers": 16},
            test_kwargs={"n_layers": 2},
            data="vector",
        ),
        CatalogEntry(
            "realnvp",
            RealNVP,
            "RealNVP affine coupling flow with ActNorm and permutations (§3.1)",
            kwargs={"n_blocks": 6, "hidden": [128, 128]},
            quick_kwargs={"n_blocks": 4, "hidden": [64, 64]},
            test_kwargs={"n_blocks": 2, "hidden": [8]},
            data="vector",
        ),
        CatalogEntry(
            "maf",
            MAF,
            "masked autoregressive flow on MADE conditioners (§3.1)",
            kwargs={"n_layers": 5, "hidden": [128, 128]},
            quick_kwargs={"n_layers": 4, "hidden": [64, 64]},
            test_kwargs={"n_layers": 2, "hidden": [8]},
            data="vector",
        ),
        CatalogEntry(
            "cnf",
            CNF,
            "FFJORD continuous normalizing flow, ODE likelihood with Hutchinson trace (§3.2)",
            kwargs={"hidden": [64, 64, 64], "rtol": 1e-5, "atol": 1e-5},
            quick_kwargs={"hidden": [64, 64], "solver_steps": 8},
            test_kwargs={"hidden": [8], "solver_steps": 4},
            data="vector",
        ),
    ]
    from probpath.adversarial import GAN, WGAN, ConditionalGAN, CycleGAN
    from probpath.likelihood.vae import VAE, VQVAE, BetaVAE, FlowVAE, HierarchicalVAE

    tiny_vae = {"latent_dim": 2, "hidden": [8], "iwae_samples": 4}
    tiny_conv = {"channels": [4, 8]}
    entries += [
        CatalogEntry(
            "vae",
            VAE,
            "variational autoencoder, MLP, Gaussian decoder; NLL = IWAE bound (§1.2, Eq. 16)",
            kwargs={"latent_dim": 8, "hidden": [128, 128]},
            quick_kwargs={"hidden": [64, 64], "iwae_samples": 32},
            test_kwargs=tiny_vae,
            data="vector",
        ),
        CatalogEntry(
            "vae-conv",
            VAE,
            "variational autoencoder with a small conv encoder/decoder, for images (§1.2)",
            kwargs={
                "latent_dim": 16,
                "architecture": "conv",
                "channels": [32, 64],
                "sample_noise": False,
            },
            quick_kwargs={"channels": [16, 32], "iwae_samples": 32},
            test_kwargs={**tiny_vae, **tiny_conv},
            data="image",
        ),
        CatalogEntry(
            "beta-vae",
            BetaVAE,
            "beta-VAE: KL weighted by beta=4 for disentangling (§1.2)",
            kwargs={"latent_dim": 8, "hidden": [128, 128], "beta": 4.0},
            quick_kwargs={"hidden": [64, 64], "iwae_samples": 32},
            test_kwargs=tiny_vae,
            data="vector",
        ),
        CatalogEntry(
            "flow-vae",
            FlowVAE,
            "VAE with a planar-flow posterior, free energy of Eq. 54 (§3.1)",
            kwargs={"latent_dim": 8, "hidden": [128, 128], "flow": "planar", "flow_length": 8},
            quick_kwargs={"hidden": [64, 64], "flow_length": 4, "iwae_samples": 32},
            test_kwargs={**tiny_vae, "flow_length": 2},
            data="vector",
        ),
        CatalogEntry(
            "hvae",
            HierarchicalVAE,
            "hierarchical VAE, two stochastic layers, top-down inference (§1.2)",
            kwargs={"latent_dims": [16, 8], "width": 128, "hidden": [128]},
            quick_kwargs={"width": 64, "hidden": [64], "iwae_samples": 32},
            test_kwargs={"latent_dims": [2, 2], "width": 8, "hidden": [], "iwae_samples": 4},
            data="vector",
        ),
        CatalogEntry(
            "vqvae",
            VQVAE,
            "VQ-VAE: EMA codebook, straight-through, autoregressive code prior (§1.2)",
            kwargs={"num_codes": 32, "code_dim": 8, "num_tokens": 4, "hidden": [128, 128]},
            quick_kwargs={"hidden": [64, 64], "prior_hidden": 64},
            test_kwargs={
                "num_codes": 4,
                "code_dim": 2,
                "num_tokens": 2,
                "hidden": [8],
                "prior_hidden": 8,
            },
            data="vector",
        ),
        CatalogEntry(
            "vqvae-conv",
            VQVAE,
            "VQ-VAE with conv encoder/decoder, one code per 4x4 cell, for images (§1.2)",
            kwargs={
                "num_codes": 64,
                "code_dim": 16,
                "architecture": "conv",
                "channels": [32, 64],
                "sample_noise": False,
            },
            quick_kwargs={"channels": [16, 32], "prior_hidden": 64},
            test_kwargs={"num_codes": 4, "code_dim": 2, "prior_hidden": 8, **tiny_conv},
            data="image",
        ),
        CatalogEntry(
            "gan",
            GAN,
            "GAN, non-saturating loss, MLP generator/discriminator; implicit (§1.3, Eq. 17)",
            kwargs={"latent_dim": 16, "hidden": [128, 128]},
            quick_kwargs={"hidden": [64, 64]},
            test_kwargs={"latent_dim": 2, "hidden": [8]},
            data="vector",
        ),
        CatalogEntry(
            "gan-conv",
            GAN,
            "DCGAN-like GAN with spectral norm, for images; implicit (§1.3)",
            kwargs={
                "latent_dim": 32,
                "architecture": "conv",
                "channels": [32, 64],
                "spectral_norm": True,
                "tanh_output": True,
            },
            quick_kwargs={"channels": [16, 32]},
            test_kwargs={"latent_dim": 2, **tiny_conv},
            data="image",
        ),
        CatalogEntry(
            "wgan-gp",
            WGAN,
            "Wasserstein GAN with gradient penalty; implicit (§1.3)",
            kwargs={"latent_dim": 16, "hidden": [128, 128]},
            quick_kwargs={"hidden": [64, 64], "d_steps": 2},
            test_kwargs={"latent_dim": 2, "hidden": [8], "d_steps": 1},
            data="vector",
        ),
        CatalogEntry(
            "cgan",
            ConditionalGAN,
            "conditional GAN, labels into G and D (projection); implicit (§1.3)",
            kwargs={"latent_dim": 16, "hidden": [128, 128]},
            quick_kwargs={"hidden": [64, 64]},
            test_kwargs={"latent_dim": 2, "hidden": [8]},
            data="vector",
        ),
        CatalogEntry(
            "cyclegan",
            CycleGAN,
            "CycleGAN between the data and a rotated copy; a translator, not a density (§1.3)",
            kwargs={"transform": "rotate90", "hidden": [64, 64]},
            quick_kwargs={"hidden": [32, 32]},
            test_kwargs={"hidden": [8], "reservoir_size": 16},
            data="any",
            in_compare=False,
        ),
    ]
    # --- probability-path routes (§2, §3.3) ---
    from probpath.score import NCSN, DiffusionModel, ScoreSDE
    from probpath.velocity import FlowMatching, RectifiedFlow

    mlp_quick = {"network": {"hidden": [128, 128, 128]}, "likelihood_steps": 16}
    mlp_test = {"network": {"hidden": [16, 16]}, "steps": 3, "likelihood_steps": 6}
    entries += [
        CatalogEntry(
            "ddpm",
            DiffusionModel,
            "DDPM, linear betas, eps-prediction, L_simple (Eq. 41); ancestral sampling (§2.4)",
            quick_kwargs=mlp_quick,
            test_kwargs={**mlp_test, "num_steps": 100},
            data="vector",
        ),
        CatalogEntry(
            "ddpm-v",
            DiffusionModel,
            "DDPM, linear betas, v-prediction (Salimans & Ho 2022); DPM-Solver++ 2M, 20 steps",
            kwargs={"prediction": "v", "sampler": "dpmpp_2m", "steps": 20},
            quick_kwargs=mlp_quick,
            test_kwargs={**mlp_test, "num_steps": 100},
            data="vector",
        ),
        CatalogEntry(
            "ddpm-unet",
            DiffusionModel,
            "DDPM with a small UNet, for images (§2.4)",
            kwargs={"network": {"base_channels": 32, "channel_mult": [1, 2]}},
            # --quick: a 200-step ancestral chain keeps the UNet's sampling inside the budget
            quick_kwargs={"network": {"base_channels": 16}, "likelihood_steps": 8, "steps": 200},
            test_kwargs={
                "network": {"base_channels": 4, "channel_mult": [1]},
                "num_steps": 100,
                "steps": 2,
                "likelihood_steps": 2,
            },
            data="image",
        ),
        CatalogEntry(
            "ncsn",
            NCSN,
            "NCSN: geometric noise levels, Eq. 33 loss, annealed Langevin sampling (§2.3)",
            quick_kwargs={**mlp_quick, "sampler_options": {"n_steps": 20}},
            test_kwargs={
                **mlp_test,
                "num_scales": 3,
                "sigma_max": 2.0,  # an untrained VE model's density is ~sigma_max wide
                "sampler_options": {"n_steps": 2},
            },
            data="vector",
        ),
        CatalogEntry(
            "score-sde",
            ScoreSDE,
            "score SDE, VP (Eq. 48), weighted DSM (Eq. 44), reverse-SDE Euler-Maruyama (§2.5)",
            quick_kwargs=mlp_quick,
            # an untrained VP flow contracts by exp(-int beta / 2); keep the test density on
            # the battery's grid with a mild beta_max
            test_kwargs={**mlp_test, "schedule": {"beta_max": 2.0}},
            data="vector",
        ),
        CatalogEntry(
            "score-sde-ve",
            ScoreSDE,
            "score SDE, VE (Eq. 46), predictor-corrector sampling (§2.5)",
            kwargs={
                "sde": "ve",
                "schedule": {"sigma_min": 0.01, "sigma_max": 20.0},
                "sampler": "pc",
                "steps": 100,
            },
            quick_kwargs=mlp_quick,
            test_kwargs={**mlp_test, "schedule": {"sigma_min": 0.01, "sigma_max": 2.0}},
            data="vector",
        ),
        CatalogEntry(
            "cfm",
            FlowMatching,
            "conditional flow matching, independent coupling, Heun 10 steps (§3.3, Eq. 62)",
            quick_kwargs=mlp_quick,
            test_kwargs=mlp_test,
            data="vector",
        ),
        CatalogEntry(
            "ot-cfm",
            FlowMatching,
            "OT-CFM: exact minibatch optimal-transport coupling (§3.3)",
            kwargs={"coupling": "ot"},
            quick_kwargs=mlp_quick,
            test_kwargs=mlp_test,
            data="vector",
        ),
        CatalogEntry(
            "rectified-flow",
            RectifiedFlow,
            "rectified flow (straight path, Euler); .reflow() straightens it (§3.3)",
            quick_kwargs=mlp_quick,
            test_kwargs=mlp_test,
            data="vector",
        ),
    ]
    # --- the survey's scale-up recipes (§2.5, §3.3; Tables 1-3): EDM, SiT ---
    from probpath.score.edm import EDM
    from probpath.velocity.interpolants import StochasticInterpolant

    entries += [
        CatalogEntry(
            "edm",
            EDM,
            "EDM recipe: preconditioned denoiser, lognormal sigma, lambda(sigma), Heun 18 steps",
            quick_kwargs=mlp_quick,
            # sigma_max 10: an untrained preconditioned denoiser is N(0, sigma_data^2)'s, whose
            # flow stays on the battery's grid; the coarse likelihood solve needs a short span
            test_kwargs={**mlp_test, "sigma_max": 10.0},
            data="vector",
        ),
        CatalogEntry(
            "sit",
            StochasticInterpolant,
            "SiT: velocity on the GVP interpolant; Heun ODE, or .sample_sde with tunable w(t)",
            quick_kwargs=mlp_quick,
            test_kwargs=mlp_test,
            data="vector",
        ),
    ]
    # --- latent models (Rombach et al. 2022; issue 16): a KL-regularised conv autoencoder,
    # then a path model on its scaled latents; NLL = a bound (reconstruction + latent ODE
    # log-density + log-scale + encoder entropy). --set latent_dim=D, autoencoder_share=S ---
    from probpath.latent import LatentDiffusion, LatentFlowMatching

    latent_quick = {"autoencoder": {"channels": [16, 32]}}
    latent_test = {"latent_dim": 2, "autoencoder": {"channels": [4, 8]}}
    ldm_prior = {"prediction": "v", "sampler": "dpmpp_2m", "steps": 20}
    entries += [
        CatalogEntry(
            "ldm",
            LatentDiffusion,
            "latent diffusion: conv KL-autoencoder, then DDPM-v on its latents; DPM++ 2M 20",
            kwargs={"prior_options": ldm_prior},
            quick_kwargs={**latent_quick, "prior_options": {**ldm_prior, **mlp_quick}},
            test_kwargs={
                **latent_test,
                "prior_options": {**ldm_prior, **mlp_test, "num_steps": 100},
            },
            data="image",
        ),
        CatalogEntry(
            "latent-cfm",
            LatentFlowMatching,
            "latent flow matching: conv KL-autoencoder, then CFM on its latents; Heun 10",
            quick_kwargs={**latent_quick, "prior_options": mlp_quick},
            test_kwargs={**latent_test, "prior_options": mlp_test},
            data="image",
        ),
    ]
    # --- few-step maps (§3.3; issue 14): 1-4 NFE; `teacher=RUN_DIR` distils a trained model,
    # without one the distillation entries train their own flow-matching teacher jointly ---
    from probpath.maps import (
        ConsistencyFlowMatching,
        ConsistencyModel,
        MeanFlow,
        ProgressiveDistillation,
        RectifiedDistillation,
        ShortcutModel,
    )

    map_quick = {"network": {"hidden": [128, 128, 128]}}
    map_test = {"network": {"hidden": [8]}}
    entries += [
        CatalogEntry(
            "consistency",
            ConsistencyModel,
            "consistency distillation of a flow-matching teacher (Heun step, iCT schedule); 1 NFE",
            kwargs={"weighting": "uniform", "renoise_time": 0.8},
            quick_kwargs={**map_quick, "teacher_network": {"hidden": [128, 128, 128]}},
            test_kwargs={**map_test, "teacher_network": {"hidden": [8]}},
            data="vector",
        ),
        CatalogEntry(
            "consistency-training",
            ConsistencyModel,
            "improved consistency training: pseudo-Huber, lognormal noise, curriculum; 1 NFE",
            kwargs={"mode": "training", "weighting": "uniform", "renoise_time": 0.8},
            quick_kwargs=map_quick,
            test_kwargs={**map_test, "n_min": 2, "n_max": 4, "curriculum_steps": 4},
            data="vector",
        ),
        CatalogEntry(
            "consistency-fm",
            ConsistencyFlowMatching,
            "consistency flow matching, 2 segments, velocity consistency (Yang et al.); 2 NFE",
            quick_kwargs=map_quick,
            test_kwargs=map_test,
            data="vector",
        ),
        CatalogEntry(
            "rectified-distillation",
            RectifiedDistillation,
            "1-step distillation of a (rectified) flow's ODE map, Euler-parameterised; 1 NFE",
            quick_kwargs={**map_quick, "teacher_network": {"hidden": [128, 128, 128]}},
            test_kwargs={**map_test, "teacher_network": {"hidden": [8]}, "pair_steps": 2},
            data="vector",
        ),
        CatalogEntry(
            "meanflow",
            MeanFlow,
            "MeanFlow: average velocity u(x, r, t) by the MeanFlow identity (jvp); 1 NFE",
            quick_kwargs=map_quick,
            test_kwargs=map_test,
            data="vector",
        ),
        CatalogEntry(
            "shortcut",
            ShortcutModel,
            "shortcut model: step-size-conditioned velocity, self-consistency; 1 NFE",
            quick_kwargs=map_quick,
            test_kwargs=map_test,
            data="vector",
        ),
        CatalogEntry(
            "progressive-distillation",
            ProgressiveDistillation,
            "progressive distillation of a v-prediction DDPM, 64 -> 4 DDIM steps (Salimans & Ho)",
            quick_kwargs={**map_quick, "round_steps": 300},
            test_kwargs={**map_test, "teacher_steps": 4, "final_steps": 2, "round_steps": 2},
            data="vector",
        ),
    ]
    return entries


_CATALOG: list[CatalogEntry] | None = None


def _catalog() -> list[CatalogEntry]:
    global _CATALOG
    if _CATALOG is None:
        _CATALOG = _entries()
        names = [e.name for e in _CATALOG]
        if len(set(names)) != len(names):
            raise RuntimeError(f"duplicate catalog names: {names}")
    return _CATALOG


class _CatalogView:
    """Read-only, lazily built view of the entries (iterable, indexable by name)."""

    def __iter__(self):
        return iter(_catalog())

    def __len__(self) -> int:
        return len(_catalog())

    def __getitem__(self, name: str) -> CatalogEntry:
        return get_entry(name)

    def __contains__(self, name: object) -> bool:
        return any(e.name == name for e in _catalog())


CATALOG = _CatalogView()


def model_names() -> list[str]:
    """All catalog names, in catalog order."""
    return [e.name for e in _catalog()]


def get_entry(name: str) -> CatalogEntry:
    """The entry called ``name``; the error lists the valid names."""
    for e in _catalog():
        if e.name == name:
            return e
    raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}")


def entry_for_class(class_name: str) -> CatalogEntry:
    """The first entry whose class is called ``class_name`` (used by :func:`probpath.load`)."""
    for e in _catalog():
        if e.cls.__name__ == class_name:
            return e
    raise ValueError(
        f"no catalog model has class {class_name!r}; the file was written by another probpath "
        "version or is not a probpath model"
    )


def build_model(
    entry: CatalogEntry | str,
    event_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    *,
    quick: bool = False,
    test: bool = False,
    **overrides: Any,
):
    """Construct ``entry``'s model for data of ``event_shape`` (and ``num_classes`` labels).

    ``event_shape`` / ``num_classes`` are passed only to constructors that take them.
    Later keyword sources win: entry kwargs < quick/test kwargs < ``overrides``.
    """
    if isinstance(entry, str):
        entry = get_entry(entry)
    kwargs = dict(entry.kwargs)
    if quick:
        kwargs.update(entry.quick_kwargs)
    if test:
        kwargs.update(entry.test_kwargs)
    kwargs.update(overrides)
    params = inspect.signature(entry.cls.__init__).parameters
    if "event_shape" in params and event_shape is not None:
        kwargs.setdefault("event_shape", tuple(event_shape))
    if "num_classes" in params and num_classes is not None:
        kwargs.setdefault("num_classes", num_classes)
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        raise ValueError(
            f"model {entry.name!r} has no option(s) {unknown}; its options are "
            f"{[p for p in params if p != 'self']}"
        )
    model = entry.cls(**kwargs)
    model.catalog_name = entry.name  # saved in config.json: probpath.load finds this entry
    return model
