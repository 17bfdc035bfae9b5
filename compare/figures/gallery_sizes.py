"""What the figure gallery (``covsde figures``) draws and at which size: names, grids, path
counts, seeds. No plotting import here, so that ``covsde --help`` stays light."""
import numpy as np

#: the figures, in drawing order (``--only``); each is a method of
#: :class:`compare.figures.gallery.Gallery`
FIGURES = ("distribution", "trajectories", "convergence", "weak_error", "stability",
           "rank_collapse",
           "masks_layernorm", "similarity_removal", "espa_kernel", "doubly_exponential",
           "collapse_rate_diameter", "ln_equilibria", "masked_positions", "masked_stability")
#: the files each figure writes under ``--out`` (besides captions.md)
OUTPUTS = {
    "distribution": ("distribution_rho01.png", "distribution_rho01.pdf", "distribution_V00.png",
                     "distribution_V00.pdf"),
    "trajectories": ("trajectories.png", "trajectories.pdf"),
    "convergence": ("convergence.png", "convergence.pdf", "convergence.csv"),
    "weak_error": ("weak_error.png", "weak_error.pdf"),
    "stability": ("stability.png", "stability.pdf", "stability.csv"),
    "rank_collapse": ("rank_collapse.png", "rank_collapse.pdf"),
    "masks_layernorm": ("masks_layernorm.png", "masks_layernorm.pdf"),
    "similarity_removal": ("similarity_removal.png", "similarity_removal.pdf"),
    "espa_kernel": ("espa_kernel.png", "espa_kernel.pdf"),
    "doubly_exponential": ("doubly_exponential.png", "doubly_exponential.pdf"),
    "collapse_rate_diameter": ("collapse_rate_diameter.png", "collapse_rate_diameter.pdf"),
    "ln_equilibria": ("ln_equilibria.png", "ln_equilibria.pdf"),
    "masked_positions": ("masked_positions.png", "masked_positions.pdf"),
    "masked_stability": ("masked_stability.png", "masked_stability.pdf", "masked_stability.csv"),
}
DIST_RATIOS = (0.25, 0.5, 1.0, 2.0)

CONV_RATIOS = (0.25, 0.5, 1.0)

#: SDE step of the convergence reference: 2^-9, finer than 1/n for every width used, and
#: every d/n and layer/width (widths are powers of 2) is an exact multiple of it.
CONV_DT = 2.0 ** -9

#: horizon T of the stability map's blow-up probabilities.
STAB_T = 1.0

#: path counts, widths and grids per size.
SIZES = {
    "full": dict(dist_sde_paths=20_000, dist_fin_paths=4000, dist_width=200,
                 conv_widths=(16, 32, 64, 128, 256), conv_fin_paths=40_000,
                 conv_sde_paths=200_000, n_boot=200,
                 stab_gammas=(0.25, 0.5, 0.75, 1.0), stab_taus=(0.25, 0.5, 1.0, 2.0),
                 stab_paths=10_000, stab_dt0=0.05, stab_halvings=6,
                 masked_m=8, masked_sde_paths=4000, masked_fin_paths=1000, masked_width=128,
                 masked_stab_gammas=(0.3, 0.5, 0.7, 0.9),
                 masked_stab_taus=(0.4, 0.6, 0.8, 1.0, 1.5), masked_stab_paths=5000,
                 masked_stab_m=8, masked_stab_dt0=0.05, masked_stab_halvings=5),
    "quick": dict(dist_sde_paths=5000, dist_fin_paths=1500, dist_width=64,
                  conv_widths=(8, 16, 32, 64), conv_fin_paths=40_000,
                  conv_sde_paths=80_000, n_boot=100,
                  stab_gammas=(0.5, 0.75, 1.0), stab_taus=(0.5, 1.0, 2.0),
                  stab_paths=2000, stab_dt0=0.05, stab_halvings=5,
                  masked_m=8, masked_sde_paths=2000, masked_fin_paths=500, masked_width=64,
                  masked_stab_gammas=(0.3, 0.6, 0.9), masked_stab_taus=(0.5, 1.0, 1.5),
                  masked_stab_paths=500, masked_stab_m=8, masked_stab_dt0=0.05,
                  masked_stab_halvings=4),
    "tiny": dict(dist_sde_paths=400, dist_fin_paths=200, dist_width=16,
                 conv_widths=(8, 16, 32), conv_fin_paths=400,
                 conv_sde_paths=1000, n_boot=40,
                 stab_gammas=(0.5, 1.0), stab_taus=(0.5, 1.0),
                 stab_paths=300, stab_dt0=0.1, stab_halvings=4,
                 masked_m=3, masked_sde_paths=100, masked_fin_paths=40, masked_width=16,
                 masked_stab_gammas=(0.5, 0.9), masked_stab_taus=(0.5, 1.0),
                 masked_stab_paths=50, masked_stab_m=3, masked_stab_dt0=0.1,
                 masked_stab_halvings=2),
}

#: dataset index k for the seeds (never reuse a k).
_SEED_INDEX = {"dist_sde": 1, "dist_ode": 2, "dist_finite": 3, "conv_sde": 4, "conv_finite": 10,
               "stab": 100, "masked_sde": 200, "masked_finite": 201, "masked_stab": 202}


def derived_seed(seed, k):
    """The seed of dataset k in a run with seed ``seed``: ``SeedSequence([seed, k])``."""
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1, np.uint32)[0])
