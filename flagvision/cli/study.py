"""CLI for Optuna studies: ``tune``, ``study show|list|final``, ``dashboard``.

Registered by ``cli.build_parser``. Options map one-to-one onto :class:`flagvision.studies.runner.StudyConfig`;
per-parameter narrowing is ``--fix NAME=VALUE``, ``--range NAME=LOW:HIGH`` and
``--choices NAME=A,B`` (repeatable), checked against ``config.HYPERPARAMS``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flagvision.config import CNN_IMAGE_SIZE, DEFAULT_AUGMENT, PARAM_SPECS, SEARCHABLE, DataConfig
from flagvision.strict_json import dumps as json_dumps
from flagvision.studies.options import PRUNERS, PRUNING_TRADE, SAMPLER_HELP, SAMPLERS

if TYPE_CHECKING:  # flagvision.studies.runner imports Optuna: only the commands that need it import it
    from flagvision.studies.config import ParamOverride, StudyConfig


def _parse_override(kind: str, text: str) -> ParamOverride:
    from flagvision.studies.config import ParamOverride, StudyError

    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not value:
        raise StudyError(f"--{kind} {text!r}: expected NAME=VALUE (e.g. --fix activation=ReLU, --range lr=1e-4:5e-4)")
    if name not in SEARCHABLE:
        raise StudyError(f"--{kind} {text!r}: {name!r} is not a searchable parameter; valid: {', '.join(SEARCHABLE)}")
    spec = PARAM_SPECS[name]

    def number(s: str) -> float:
        try:
            return float(s)
        except ValueError:
            raise StudyError(f"--{kind} {text!r}: {s!r} is not a number") from None

    if kind == "fix":
        return ParamOverride(name, fixed=value if spec.kind == "categorical" else number(value))
    if kind == "choices":
        return ParamOverride(name, choices=tuple(c.strip() for c in value.split(",") if c.strip()))
    low, sep, high = value.partition(":")
    if not sep:
        raise StudyError(f"--range {text!r}: expected NAME=LOW:HIGH (e.g. --range lr=1e-4:5e-4)")
    return ParamOverride(name, low=number(low) if low else None, high=number(high) if high else None)


def config_from_args(args: argparse.Namespace, ws) -> StudyConfig:
    """defaults < --config file < stored study (--resume) < flags, resolved once, here."""
    from flagvision.studies.config import StudyConfig, StudyError
    from flagvision.studies.storage import resume_config

    if args.resume:
        base = resume_config(args.storage or ws.storage_url, args.resume).to_dict()
        base["name"] = args.resume
    elif args.config:
        try:
            base = StudyConfig.from_dict(json.loads(Path(args.config).read_text())).to_dict()
        except (OSError, json.JSONDecodeError) as exc:
            raise StudyError(f"{args.config}: cannot read study config ({exc})") from None
    else:
        base = StudyConfig().to_dict()
    simple = {
        "name": args.name,
        "n_trials": args.n_trials,
        "timeout_s": args.timeout,
        "epochs_per_trial": args.epochs_per_trial,
        "sampler": args.sampler,
        "pruner": args.pruner,
        "seed": args.seed,
        "storage": args.storage,
        "pruner_startup_trials": args.pruner_startup_trials,
        "pruner_warmup_epochs": args.pruner_warmup_epochs,
        "pruner_percentile": args.pruner_percentile,
        "heartbeat_interval_s": args.heartbeat_interval,
        "grace_period_s": args.grace_period,
    }
    if args.storage and "://" not in args.storage:
        # A bare journal path: make it absolute, so a background worker finds the same file.
        simple["storage"] = "journal://" + str(Path(args.storage).resolve())
    base.update({k: v for k, v in simple.items() if v is not None})
    if args.no_preset:
        base["enqueue_preset"] = False
    overrides = [_parse_override("fix", t) for t in args.fix] + [_parse_override("range", t) for t in args.range]
    overrides += [_parse_override("choices", t) for t in args.choices]
    if overrides:
        replaced = {o.name for o in overrides}
        base["space"] = [o for o in base["space"] if o["name"] not in replaced] + [
            {k: v for k, v in vars(o).items() if v not in (None, ())} for o in overrides
        ]
    run = base["base"]
    data = dict(run["data"])
    if args.data:
        data["path"] = str(Path(args.data).resolve())
    elif not data["path"]:
        from flagvision.synthetic.builtin import ensure_builtin

        data["path"] = str(ensure_builtin(ws, progress=_progress_printer("building the built-in dataset")))
    for key in ("image_size", "augment", "val_fraction"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    run["data"] = DataConfig.from_dict(data).to_dict()
    for key in ("device", "threads"):
        if getattr(args, key) is not None:
            run[key] = getattr(args, key)
    return StudyConfig.from_dict(base)


def _progress_printer(label: str):
    from flagvision.cli.progress import counter

    return counter(label)


def print_results(results: dict[str, Any]) -> None:
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(results["states"].items()))
    planned = f" of {results['planned']} planned" if results.get("planned") else ""
    print(f"study {results['name']} ({results['storage']}): {results['trials']} trials{planned} ({states or 'none'})")
    best = results["best"]
    if best:
        run = f", run {best['run_id']}" if best.get("run_id") is not None else ""
        print(f"best: trial {best['number']} with {best['value']:.2%} validation accuracy{run}")
        print(
            "  " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
        )
    if results["top_trials"]:
        print("top trials:")
        for t in results["top_trials"][:5]:
            value = f"{t['value']:.2%}" if t["value"] is not None else "—"
            tag = " (the default preset)" if t.get("preset") else ""
            print(f"  #{t['number']:<4} {t['state']:<8} {value:>8}  run {t['run_id']}{tag}")
    if results["importances"]:
        print("importances: " + ", ".join(f"{k} {v:.0%}" for k, v in list(results["importances"].items())[:5]))
    print(results["what_mattered"])


def cmd_tune(args) -> int:
    import optuna

    from flagvision.cli.common import workspace_of
    from flagvision.studies.config import StudyError
    from flagvision.studies.results import study_results
    from flagvision.studies.runner import run_study

    ws = workspace_of(args)
    cfg = config_from_args(args, ws)
    if args.background:
        from flagvision.jobs.queue import submit_study

        if not Path(cfg.base.data.path).is_dir():
            raise StudyError(f"dataset folder {cfg.base.data.path} does not exist")
        job_id = submit_study(ws, cfg.to_dict(), study_name=cfg.name)
        print(f"job {job_id} queued: study {cfg.name}; follow it with: python -m flagvision jobs show {job_id}")
        return 0
    # Our own one line per epoch replaces Optuna's per-trial INFO lines.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"study {cfg.name}: {cfg.n_trials} trials × {cfg.epochs_per_trial} epochs, {cfg.sampler} sampler, "
        f"{cfg.pruner} pruner → {cfg.storage or ws.storage_url}",
        flush=True,
    )
    last = [0.0]

    def report(fraction: float, text: str) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5 or fraction >= 1.0 or "epoch" not in text:
            last[0] = now
            print(f"[{fraction:6.1%}] {text}", flush=True)

    from flagvision.cli.progress import StudyBar, close_all

    study_bar = StudyBar(cfg.name, cfg.n_trials, fallback=report)  # a bar on a terminal, else the lines
    try:
        summary = run_study(cfg, ws, report=study_bar)
        study_bar.close()
    except KeyboardInterrupt:
        close_all()
        print(
            f"interrupted; resume with: python -m flagvision tune --resume {cfg.name!r}"
            + (f" --storage {cfg.storage!r}" if cfg.storage else ""),
            file=sys.stderr,
        )
        return 130
    if summary.stopped:
        print(f"stopped ({summary.stopped}) after {summary.seconds:.0f}s", file=sys.stderr)
    print(f"{summary.trials_run} trial(s) run in {summary.seconds:.1f}s")
    print_results(study_results(cfg.storage or ws.storage_url, cfg.name))
    return 0


def cmd_study(args) -> int:
    from flagvision.cli.common import workspace_of
    from flagvision.studies.results import study_results, submit_final_training
    from flagvision.studies.storage import list_studies

    ws = workspace_of(args)
    url = args.storage or ws.storage_url
    if args.study_command == "list":
        rows = list_studies(url)
        if args.json:
            print(json_dumps(rows, indent=2))
        for r in [] if args.json else rows:
            best = f"{r['best_value']:.2%}" if r["best_value"] is not None else "—"
            print(f"{r['name']}: {r['trials']} trials, best {best}")
        if not rows and not args.json:
            print("no studies")
    elif args.study_command == "show":
        results = study_results(url, args.name)
        if args.json:
            print(json_dumps(results, indent=2, default=str))
        else:
            print_results(results)
    elif args.study_command == "final":
        job_id, run_id = submit_final_training(ws, url, args.name, epochs=args.epochs)
        print(f"job {job_id} queued (run {run_id}): best parameters of {args.name}, {args.epochs} epochs")
    return 0


def cmd_dashboard(args) -> int:
    from flagvision.cli.common import workspace_of
    from flagvision.studies.dashboard import start_dashboard

    url = args.storage or workspace_of(args).storage_url
    handle = start_dashboard(url, port=args.port)

    def on_term(signum, frame) -> None:
        raise KeyboardInterrupt  # SIGTERM (kill, a supervisor) stops the child like Ctrl-C does

    signal.signal(signal.SIGTERM, on_term)
    print(f"optuna-dashboard on {handle.storage}: {handle.url}  (Ctrl-C to stop)", flush=True)
    try:
        while handle.running:
            time.sleep(0.5)
        print(f"optuna-dashboard exited: {handle.log_tail().strip()[-500:]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        handle.stop()


def register(sub) -> None:
    """Add ``tune``, ``study`` and ``dashboard`` to the main parser's sub-commands."""
    p = sub.add_parser("tune", help="run (or resume) an Optuna study of the custom CNN's hyperparameters")
    p.add_argument("--name", help="study name; an existing study of that name is resumed if its space matches")
    p.add_argument("--resume", metavar="NAME", help="resume a study with its stored options (flags still override)")
    p.add_argument("--config", help="JSON StudyConfig file; flags override it")
    p.add_argument("--n-trials", type=int, help="total trials of the study (default 20)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds (default: none)")
    p.add_argument("--epochs-per-trial", type=int, help="epochs of every trial (default 5)")
    p.add_argument("--sampler", choices=SAMPLERS, help=f"{SAMPLER_HELP} Default tpe.")
    p.add_argument("--pruner", choices=PRUNERS, help=f"default percentile. {PRUNING_TRADE}")
    p.add_argument(
        "--pruner-startup-trials",
        type=int,
        help="percentile/median pruner: complete trials before any pruning (default 2)",
    )
    p.add_argument(
        "--pruner-warmup-epochs",
        type=int,
        help="percentile/median pruner: first epochs of each trial never pruned (default 0: judged from epoch 1)",
    )
    p.add_argument(
        "--pruner-percentile",
        type=float,
        help="percentile pruner: a trial goes on while in this top %% of complete trials at its epoch "
        "(1–100, default 25; 50 = median)",
    )
    p.add_argument("--seed", type=int, help="sampler seed (default 0)")
    p.add_argument(
        "--storage", help="sqlite:///…, postgresql://…, journal:///file.log or file.log (default: the workspace)"
    )
    p.add_argument("--data", help="ImageFolder dataset (default: the built-in flags)")
    p.add_argument("--image-size", type=int, help=f"network input size in px (default {CNN_IMAGE_SIZE})")
    p.add_argument("--augment", type=float, help=f"augmentation strength 0–1 (default {DEFAULT_AUGMENT})")
    p.add_argument("--val-fraction", type=float, help="held-out share without a test/ split (default 0.2)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, help="torch threads per trial (0 = all cores)")
    p.add_argument(
        "--heartbeat-interval", type=int, help="seconds between a trial's heartbeats (RDB storages; default 10)"
    )
    p.add_argument(
        "--grace-period", type=int, help="seconds without heartbeat before a trial is failed and retried (default 60)"
    )
    p.add_argument(
        "--fix", action="append", default=[], metavar="NAME=VALUE", help="do not search NAME; use VALUE (repeatable)"
    )
    p.add_argument(
        "--range", action="append", default=[], metavar="NAME=LOW:HIGH", help="narrow NAME's range (repeatable)"
    )
    p.add_argument(
        "--choices", action="append", default=[], metavar="NAME=A,B", help="restrict a categorical NAME (repeatable)"
    )
    p.add_argument("--no-preset", action="store_true", help="do not run the default preset as the first trial")
    p.add_argument("--background", action="store_true", help="run as a background job and return at once")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("study", help="inspect studies: list, show NAME, final NAME (train the best parameters)")
    ssub = p.add_subparsers(dest="study_command", required=True)
    s = ssub.add_parser("list", help="studies in the storage")
    s.add_argument("--storage")
    s.add_argument("--json", action="store_true")
    s = ssub.add_parser("show", help="best trial, top trials, importances, what mattered")
    s.add_argument("name")
    s.add_argument("--storage")
    s.add_argument("--json", action="store_true")
    s = ssub.add_parser("final", help="queue a normal training run of the best parameters with more epochs")
    s.add_argument("name")
    s.add_argument("--storage")
    s.add_argument("--epochs", type=int, default=10)
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("dashboard", help="start optuna-dashboard on the workspace's studies")
    p.add_argument("--storage", help="storage URL (default: the workspace's SQLite file)")
    p.add_argument("--port", type=int, help="port (default: a free one)")
    p.set_defaults(func=cmd_dashboard)
