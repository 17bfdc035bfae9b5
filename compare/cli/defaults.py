"""Constants the subcommands' ``--help`` shows, spelled here so that building the parser
imports no numerical package (``covsde --help`` stays light). Each equals the library's own
constant, named beside it; tests/test_cli_manners.py checks that they agree."""

#: ``sde.simulate.METHODS``
SIMULATE_METHODS = ("euler", "spd", "ode")
#: ``sde.simulate.DEFAULT_BOUND``
DEFAULT_BOUND = 1e4
#: ``finite.SAMPLERS``
SAMPLERS = ("literal", "reduced")
#: ``sde.blowup.BLOWUP_METHODS``, ``DEFAULT_MAX_HALVINGS``, ``DEFAULT_RTOL``, ``DEFAULT_ATOL``
BLOWUP_METHODS = ("spd", "euler")
DEFAULT_MAX_HALVINGS = 6
DEFAULT_RTOL = 0.1
DEFAULT_ATOL = 1e-3
#: ``compare.distances.DEFAULT_N_BOOT``, ``MIN_N_BOOT``, ``WARN_N_BOOT``
DEFAULT_N_BOOT = 200
MIN_N_BOOT = 40
WARN_N_BOOT = 200
#: ``compare.convergence.SDE_METHODS``: the SDE schemes of ``covsde convergence``
SCHEMES = ("euler", "spd")
#: ``compare.weak_error.DEFAULT_FUNCTIONALS``
DEFAULT_FUNCTIONALS = ("corr:0,1", "exp:0", "alive")
#: ``compare.collapse_rate.STATS``
COLLAPSE_RATE_STATS = ("log-consensus", "loglog-consensus", "log-dissimilarity")

#: (library module, its name, the name here)
SOURCES = (("sde.simulate", "METHODS", "SIMULATE_METHODS"),
           ("sde.simulate", "DEFAULT_BOUND", "DEFAULT_BOUND"),
           ("finite", "SAMPLERS", "SAMPLERS"),
           ("sde.blowup", "BLOWUP_METHODS", "BLOWUP_METHODS"),
           ("sde.blowup", "DEFAULT_MAX_HALVINGS", "DEFAULT_MAX_HALVINGS"),
           ("sde.blowup", "DEFAULT_RTOL", "DEFAULT_RTOL"),
           ("sde.blowup", "DEFAULT_ATOL", "DEFAULT_ATOL"),
           ("compare.distances", "DEFAULT_N_BOOT", "DEFAULT_N_BOOT"),
           ("compare.distances", "MIN_N_BOOT", "MIN_N_BOOT"),
           ("compare.distances", "WARN_N_BOOT", "WARN_N_BOOT"),
           ("compare.collapse_rate", "STATS", "COLLAPSE_RATE_STATS"),
           ("compare.convergence", "SDE_METHODS", "SCHEMES"),
           ("compare.weak_error", "DEFAULT_FUNCTIONALS", "DEFAULT_FUNCTIONALS"))
