"""Benchmarks: each prints ratios against a plain reference measured in the same run (``hpo bench``).

- ``training.py``  the trainer against a plain PyTorch loop and the device's ceiling; packing; pruning
- ``storage.py``   what the study storage costs per trial, with 1, 4 and 8 workers
- ``startup.py``   how long ``hpo`` takes to answer, in fresh processes

May import: hpo.core, hpo.stores, hpo.train, hpo.study, hpo.spec, hpo.track, hpo.search, hpo.data, hpo.models.
"""
