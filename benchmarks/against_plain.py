"""hpo against the plain script a user would write (``benchmarks/plain_digits.py``), in one run, both ways.

For MLflow on and off, ``hpo run studies/digits.yaml`` and the plain script each run in a fresh folder, one
after the other (which goes first alternates between repetitions), and their wall times (start-up included)
and test accuracies are printed side by side, with hpo's time as a ratio of the script's. ``--busy`` runs
each of them next to one process that keeps a core busy, as on a shared machine.

    python benchmarks/against_plain.py                      # the full study: about 2-3 minutes a pair on 2 cores
    python benchmarks/against_plain.py --busy --repeats 3
    python benchmarks/against_plain.py --trials 4 --epochs 2 --retrain-epochs 2 --json   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _timed(command: list[str], folder: Path, busy: bool) -> tuple[float, float | None, str]:
    """(wall seconds, test accuracy, output) of ``command`` run in ``folder``."""
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "MLFLOW_TRACKING_URI", "HPO_ARTIFACTS")}
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        if hog is not None:
            time.sleep(1.0)  # running before the measured command starts
        started = time.perf_counter()
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{output[-3000:]}")
    found = re.findall(r"test_accuracy (\d\.\d+)", output)
    return wall, float(found[-1]) if found else None, output


def _commands(mlflow: bool, args) -> dict[str, list[str]]:
    budget = [f"--set=budget.trials={args.trials}", f"--set=budget.epochs={args.epochs}",
              f"--set=budget.retrain.epochs={args.retrain_epochs}"]
    hpo = [sys.executable, "-m", "hpo", "run", str(ROOT / "studies" / "digits.yaml"), "--quiet", *budget]
    plain = [sys.executable, str(ROOT / "benchmarks" / "plain_digits.py"), f"--trials={args.trials}",
             f"--epochs={args.epochs}", f"--retrain-epochs={args.retrain_epochs}"]
    if mlflow:
        plain.append("--mlflow=sqlite:///mlflow.db")
    else:
        hpo.append("--no-tracking")
    return {"hpo": hpo, "plain": plain}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24, help="trials in each search (default: 24)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per trial (default: 10)")
    parser.add_argument("--retrain-epochs", type=int, default=15, help="epochs of each retrain (default: 15)")
    parser.add_argument("--repeats", type=int, default=1, help="pairs per mode; the median is shown")
    parser.add_argument("--busy", action="store_true", help="next to one process that keeps a core busy")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON (progress on stderr)")
    args = parser.parse_args(argv)
    results = []
    for mlflow in (True, False):
        walls: dict[str, list[float]] = {"hpo": [], "plain": []}
        accuracies: dict[str, list[float]] = {"hpo": [], "plain": []}
        for repeat in range(args.repeats):
            order = ["hpo", "plain"] if repeat % 2 == 0 else ["plain", "hpo"]
            for who in order:
                with tempfile.TemporaryDirectory(prefix=f"against-plain-{who}-") as folder:
                    wall, accuracy, _ = _timed(_commands(mlflow, args)[who], Path(folder), args.busy)
                walls[who].append(wall)
                if accuracy is not None:
                    accuracies[who].append(accuracy)
                print(f"  {'MLflow on ' if mlflow else 'MLflow off'}  {who:5s}  {wall:6.1f}s  test_accuracy "
                      f"{accuracy}", file=sys.stderr, flush=True)
        hpo_s, plain_s = statistics.median(walls["hpo"]), statistics.median(walls["plain"])
        results.append({"mlflow": mlflow, "busy": args.busy, "hpo_s": round(hpo_s, 2), "plain_s": round(plain_s, 2),
                        "ratio": round(hpo_s / plain_s, 3), "hpo_walls": walls["hpo"], "plain_walls": walls["plain"],
                        "hpo_test_accuracy": accuracies["hpo"], "plain_test_accuracy": accuracies["plain"]})
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"digits study, {args.trials} trials x {args.epochs} epochs, retrain {args.retrain_epochs}"
          f"{', next to a busy process' if args.busy else ''}; median of {args.repeats}:")
    print(f"  {'MLflow':7s} {'hpo':>8s} {'plain':>8s} {'hpo/plain':>10s}  test_accuracy hpo / plain")
    for r in results:
        print(f"  {'on' if r['mlflow'] else 'off':7s} {r['hpo_s']:7.1f}s {r['plain_s']:7.1f}s {r['ratio']:9.2f}x  "
              f"{r['hpo_test_accuracy']} / {r['plain_test_accuracy']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
