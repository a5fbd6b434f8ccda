"""Where studies and runs are kept, and how hpo treats a store that fails.

- ``urls.py``       the study storage's URL, MLflow's tracking URI and artifact folder: defaults and checks
- ``retry.py``      the retry policy: a passing failure is retried with back-off, a full or read-only store
                    stops the work with one line; writable checks before any work starts
- ``locks.py``      locks held while a few steps must not interleave (file locks, PostgreSQL advisory locks)
- ``processes.py``  which process runs a trial or a run, and whether it still exists
- ``creation.py``   the first creation of an SQLite store, whole or not at all (a temporary file, renamed)
- ``outputs.py``    what an --output may be: never a store, a folder or a file hpo did not write

May import: hpo.core.
"""
