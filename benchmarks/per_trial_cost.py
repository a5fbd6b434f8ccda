"""The fixed cost of one trial: what ``hpo run`` spends on a trial besides training it, at trial 10 and at
trial 1,000.

A study whose trials cost almost nothing to train (digits, an ``mlp`` of 8 hidden units, 1 epoch a trial:
about 7 ms of training and validation), random sampling, no pruner, run with ``hpo run --no-retrain
--quiet`` and MLflow on. Read back from the Optuna storage: the time from one trial's end to the next one's
end (sampling, the MLflow run's start, params and end, the epoch's metrics, the curves picture and the
dashboard note, the state file, Optuna's writes, the progress line, and the training), as the median over
the 11 trials around each of ``--at``, and the trial's own duration (start to end) likewise.

    python benchmarks/per_trial_cost.py                       # SQLite for both stores, in a temporary folder
    python benchmarks/per_trial_cost.py --storage postgresql+psycopg://hpo@127.0.0.1:5432/studies \\
        --tracking-uri postgresql+psycopg://hpo@127.0.0.1:5432/mlflow
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = """name: {name}
seed: 0
data: digits
model: {{name: mlp, hidden: 8, depth: 1}}
budget: {{trials: {trials}, epochs: 1}}
search:
  lr: {{low: 1.0e-3, high: 1.0e-1, log: true}}
  optimizer: adam
  batch_size: 256
sampler: {{name: random}}
pruner: {{name: none}}
"""


def per_trial_cost(trials: int, at: list[int], storage: str | None, tracking_uri: str | None,
                   folder: Path) -> dict:
    import optuna

    name = f"per-trial-{int(time.time())}"
    study_file = folder / "study.yaml"
    study_file.write_text(STUDY.format(name=name, trials=trials))
    storage = storage or f"sqlite:///{folder}/optuna.db"
    tracking_uri = tracking_uri or f"sqlite:///{folder}/mlflow.db"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hpo", "run", str(study_file), "--no-retrain", "--quiet",
                    "--storage", storage, "--tracking-uri", tracking_uri, "--artifacts", str(folder / "artifacts")],
                   check=True, cwd=folder, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    done = sorted((t for t in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
                   if t.datetime_complete), key=lambda t: t.datetime_complete)
    ends = [t.datetime_complete.timestamp() for t in done]
    rows = []
    for n in at:
        window = range(max(1, n - 5), min(len(done), n + 6))
        if len(window) < 3:
            continue
        rows.append({"at_trial": n,
                     "end_to_end_ms": round(1000 * statistics.median(ends[i] - ends[i - 1] for i in window), 1),
                     "own_duration_ms": round(1000 * statistics.median(
                         (done[i].datetime_complete - done[i].datetime_start).total_seconds() for i in window), 1)})
    return {"trials": len(done), "wall_s": round(wall, 1), "storage": storage.split(":")[0],
            "tracking": tracking_uri.split(":")[0], "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials in the study (default: 1000)")
    parser.add_argument("--at", default="10,500,1000", help="the trials to measure around (default: 10,500,1000)")
    parser.add_argument("--storage", help="Optuna storage URL (default: SQLite in a temporary folder)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: SQLite in a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hpo-per-trial-") as folder:
        result = per_trial_cost(args.trials, [int(n) for n in args.at.split(",")], args.storage,
                                args.tracking_uri, Path(folder))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['trials']} trials in {result['wall_s']} s ({result['storage']} storage, "
          f"{result['tracking']} tracking)")
    print("at trial | end to end | the trial's own duration")
    for row in result["rows"]:
        print(f"{row['at_trial']:>8} | {row['end_to_end_ms']:>7.1f} ms | {row['own_duration_ms']:>7.1f} ms")


if __name__ == "__main__":
    main()
