"""The neutral ground every other part stands on: errors, registries, lazy imports, signals, masked text.

- ``errors.py``      the exceptions the CLI turns into one line (exit 2 for bad input, 1 for failed work)
- ``registry.py``    a dict from a name to a constructor, filled by a decorator (models, data sets, optimizers,
                     schedulers, samplers, pruners: one registry each, in the file that defines the things)
- ``lazy.py``        a library bound at import and loaded on first use, so refusing a study file stays instant
- ``interrupts.py``  Ctrl-C and SIGTERM as an exception, and blocks they must not cut in half
- ``masking.py``     passwords out of every text that leaves hpo

Nothing here knows a study. May import: nothing of hpo (hpo.data and hpo.models included).
"""
