"""Training one model: what it is given, the epoch loop, and what it leaves behind. Knows nothing of Optuna,
MLflow or the study file: a trial and a retrain hand it plain values.

- ``hyperparams.py``  the hyperparameters of one training, with their units
- ``optim.py``        optimizers and learning-rate schedules by name (registries)
- ``device.py``       choosing the device, its speed-ups (bf16, channels_last, fused), seeding, out of memory
- ``trainer.py``      ``fit`` (the training loop, read top to bottom), ``evaluate`` and ``predict``
- ``training.py``     one training epoch by epoch as trials and retrains run it: resumable, logged, stopped
                      when it diverges (the one epoch loop)
- ``state.py``        training state files, so a killed training resumes instead of restarting
- ``divergence.py``   when training has diverged
- ``checkpoint.py``   the final checkpoint: one self-contained file
- ``lr_find.py``      the learning-rate range test
- ``threads.py``      how many CPU threads a process computes with: chosen from the cores, workers and load

May import: hpo.core, hpo.stores, hpo.data, hpo.models.
"""
