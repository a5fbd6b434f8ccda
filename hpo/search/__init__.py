"""The search: trials one after another (or in worker processes) until the budget.

- ``context.py``   what a process works with while it runs trials or retrains, and the command line's stores
- ``loop.py``      claim a trial, run it, print its line; until the budget, the timeout or the grid's end
- ``trial.py``     one trial, as a sequence of named steps: seed, state, training, verdict
- ``workers.py``   several trials at once: one worker process per device slot
- ``progress.py``  what a study shows while it runs: bars or epoch lines, the study's status and ETA

May import: hpo.core, hpo.stores, hpo.train, hpo.study, hpo.spec, hpo.track, hpo.data, hpo.models.
"""
