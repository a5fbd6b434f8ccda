"""Reading a study back: ``hpo show`` and ``hpo report`` (a new report section goes in ``page.py``).

- ``summary.py``      what ``hpo show`` prints: counts by state, the best trial
- ``leaderboard.py``  the best trials in order, and the retrains
- ``page.py``         ``hpo report``: one self-contained HTML page and its Markdown twin
- ``plots.py``        the report's pictures, inline PNGs

May import: hpo.core, hpo.stores, hpo.train, hpo.study, hpo.spec, hpo.track, hpo.retrain, hpo.data, hpo.models.
"""
