"""The ``hpo`` command line: parse (``hpo/arguments.py``), call one function of the API (``hpo/api.py``), print.

Every command judges its input first and fails with one line and exit code 2 before it touches a store;
torch, Optuna and MLflow load inside the API's functions, so ``hpo --help`` and a refusal answer at once.
Results go to stdout; progress and the line a failed command ends with go to stderr.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from hpo import api
from hpo.arguments import build_parser
from hpo.core.masking import masked


def _stores_of(args) -> api.Stores:
    return api.Stores(storage=args.storage, tracking=getattr(args, "tracking_uri", None),
                      artifacts=getattr(args, "artifacts", None), tracking_off=getattr(args, "no_tracking", False))


def _say(line: str) -> None:
    """A result line, on stdout: passwords masked."""
    print(masked(line), flush=True)


def _progress(line: str) -> None:
    """A progress line, on stderr (so that stdout holds the results, and a JSON answer alone)."""
    print(line, file=sys.stderr, flush=True)


def cmd_check(args) -> int:
    spec = api.check(args.study_file, args.overrides)
    # Read before anything is printed: a warm start that cannot be read is the one line a refusal is.
    warm = api.warm_start_lines(spec, args.storage) if spec.warm_start is not None else []
    b = spec.budget
    print(f"{spec.source}: OK")
    print(f"study     {spec.name}  seed {spec.seed}  {spec.direction} {spec.metric}  device {spec.device}  "
          f"compile {spec.compile}")
    print(f"data      {spec.data.name} {dict(spec.data.args) or ''}  val {spec.data.val_fraction:g}  "
          f"test {spec.data.test_fraction:g}  split_seed {spec.data.split_seed}")
    print(f"model     {spec.model.name} {dict(spec.model.args) or ''}")
    print(f"budget    {b.trials} trials x {b.epochs} epochs, timeout {b.timeout_s or 'none'}, "
          f"retrain {', '.join(map(str, b.retrain.epochs))} epochs")
    print(f"sampler   {spec.sampler.name} {dict(spec.sampler.args) or ''}")
    print(f"pruner    {spec.pruner.name} {dict(spec.pruner.args) or ''}"
          + ("(Optuna does not prune a study with several objectives: every trial trains its whole budget)"
             if spec.multi_objective else ""))
    if spec.multi_objective:
        print(f"objectives {', '.join(f'{n} ({d})' for n, d in zip(spec.objectives, spec.directions))}: a Pareto "
              f"front; hpo run retrains its best {spec.metric}, hpo retrain/promote --trial N another point")
    print("search space:")
    for line in spec.search.describe() + (spec.model.space.describe() if spec.model.space else []):
        print("  " + line)
    for i, params in enumerate(spec.enqueue):
        print(f"enqueued trial {i}: {params}")
    for line in warm:
        print(line)
    return 0


def cmd_run(args) -> int:
    overrides = list(args.overrides)
    if args.trials is not None:
        overrides.append(f"budget.trials={args.trials}")
    if args.timeout is not None:
        overrides.append(f"budget.timeout_s={args.timeout}")
    request = api.RunRequest(args.study_file, _stores_of(args), tuple(overrides), device=args.device,
                             gpus=args.gpus, trials_per_gpu=args.trials_per_gpu, retrain=not args.no_retrain,
                             invocation=" ".join(sys.argv[1:]) or "hpo run", worker_of=args.worker_of,
                             worker_threads=args.worker_threads, threads=args.threads, quiet=args.quiet)
    return api.run(request, print_line=_say)


def cmd_show(args) -> int:
    summary, lines = api.show(args.study, args.storage, args.top, args.tracking_uri)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for line in lines:
            print(line)
    return 0


def cmd_report(args) -> int:
    page, markdown = api.report(args.study, args.output, args.top, args.storage, args.tracking_uri,
                                print_line=_progress)
    print(f"report written to {page}")
    print(f"markdown written to {markdown}")
    return 0


def cmd_retrain(args) -> int:
    overrides = list(args.overrides) + ([f"budget.retrain.epochs={args.epochs}"] if args.epochs else []) + \
        ([f"budget.retrain.seeds={args.seeds}"] if args.seeds else [])
    stores = _stores_of(args)
    api.retrain(args.study, stores, tuple(overrides), args.device, print_line=_say, trial=args.trial,
                threads=args.threads)
    print(f"next: {api.next_promote(args.study, stores, args.trial)}")
    return 0


def cmd_promote(args) -> int:
    done = api.promote(args.study, _stores_of(args), args.run, args.output, args.alias, print_line=_say,
                       trial=args.trial)
    if done.chosen_because:
        print(done.chosen_because)
    print(f"registered {done.model_name!r} version {done.version} (alias {done.alias!r}) from MLflow run "
          f"{done.run_id}, test_accuracy {done.test_accuracy:.4f}")
    print(f"checkpoint written to {done.checkpoint}")
    print(f"load it: mlflow.pyfunc.load_model('models:/{done.model_name}@{done.alias}'); serve it: "
          f"mlflow models serve -m models:/{done.model_name}@{done.alias} --env-manager local")
    print(f"next: hpo evaluate {done.checkpoint}")
    return 0


def cmd_evaluate(args) -> int:
    result = api.evaluate(args.checkpoint, args.device, args.data_root)
    if args.json:
        print(json.dumps(dataclasses.asdict(result)))
    else:
        others = ", ".join(f"{name} {value:.4f}" for name, value in (
            ("top5", result.top5), ("f1_macro", result.f1_macro), ("balanced_accuracy", result.balanced_accuracy))
            if value is not None)
        print(f"{args.checkpoint}: accuracy {result.accuracy:.4f} (loss {result.loss:.4f}; {others}) on "
              f"{result.n_images} test images of {result.data}; logged at retrain: {result.logged_test_accuracy:.4f}")
    return 0


def cmd_predict(args) -> int:
    for p in api.predict(args.checkpoint, args.files, args.device):
        if args.json:
            print(json.dumps({"file": p.file, "class": p.label, "probability": p.probability}))
        else:
            print(f"{_tsv(p.file)}\t{_tsv(p.label)}\t{p.probability:.3f}")
    return 0


def _tsv(text: str) -> str:
    """A field of a tab-separated line: a tab, a newline or a backslash in a file or class name cannot start
    a field or a line of its own (escaped as \\t, \\n, \\r and \\\\)."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def cmd_lr_find(args) -> int:
    result, plot = api.lr_find(args.study_file, args.overrides, args.device, args.start, args.end, args.steps,
                               args.output, print_line=_progress)
    if args.json:
        print(json.dumps({"suggested_lr": result.suggested_lr, "min_loss_lr": result.min_loss_lr,
                          "steps": len(result.lrs), "plot": str(plot)}))
    else:
        print(f"suggested lr {result.suggested_lr:.3g} (steepest fall; the loss is lowest at "
              f"{result.min_loss_lr:.3g}) after {len(result.lrs)} steps; plot: {plot}")
    return 0


def cmd_bench(args) -> int:
    lines = _progress if args.json else _say  # with --json, stdout holds the JSON alone
    if args.postgres and not args.storage:
        raise api.UserError("--postgres: only with --storage (it names a database to measure)")
    if args.storage:
        numbers = api.bench_storage(args.postgres, print_line=lines)
    elif args.startup:
        numbers = api.bench_startup(print_line=lines)
    elif args.search:
        numbers = api.bench_search(args.search, args.seeds, args.tolerance,
                                   args.output or f"bench-search-{Path(args.search).stem}.png", print_line=lines)
    else:
        numbers = api.bench(args.device, args.model, args.stem, args.image_size, args.channels, args.batch_size,
                            args.steps, args.packed, args.study_trials, args.study_epochs, args.folder,
                            print_line=lines, repeats=args.repeats)
    if args.json:
        print(json.dumps(numbers))
    return 0


def cmd_dashboard(args) -> int:
    api.dashboard(args.storage, args.host, args.port, print_line=_say)
    return 0


COMMANDS = {"run": cmd_run, "check": cmd_check, "show": cmd_show, "report": cmd_report, "retrain": cmd_retrain,
            "promote": cmd_promote, "evaluate": cmd_evaluate, "predict": cmd_predict, "lr-find": cmd_lr_find,
            "bench": cmd_bench, "dashboard": cmd_dashboard}


def _interrupted(command: str, stop: KeyboardInterrupt) -> int:
    print(f"hpo {command}: interrupted ({getattr(stop, 'name', 'SIGINT')}); nothing is left RUNNING"
          + ("; rerun the same command to resume" if command == "run" else ""), file=sys.stderr)
    return getattr(stop, "exit_code", 130)


def _interrupt_behind(err: Exception):
    interrupts = sys.modules.get("hpo.core.interrupts")  # loaded by every command that handles signals
    return interrupts.interrupt_behind(err) if interrupts is not None else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    interrupts = sys.modules.get("hpo.core.interrupts")
    if interrupts is not None:  # a signal an earlier command in this process took is not this one's
        interrupts.forget()
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # e.g. `hpo check ... | head`
        return 0
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM during hpo run (hpo/core/interrupts.py)
        return _interrupted(args.command, stop)
    except Exception as err:
        stop = _interrupt_behind(err)
        if stop is not None:  # the user's Ctrl-C, turned into another exception by library code
            return _interrupted(args.command, stop)
        verdict = api.explain(err) or api.crashed(err, args.command)
        kind, message, code = verdict
        # The one line a failed command ends with, on stderr: whitespace folded, passwords masked.
        print(f"hpo {args.command}: {kind}: {masked(' '.join(message.split()))}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
