"""Command line: ``python -m flagvision <command>``.

User errors (any :class:`flagvision.errors.FlagVisionError`, or an OS error about a path) print
one line to stderr and exit 2; Ctrl-C prints one line and exits 130; a closed pipe (``| head``)
ends quietly; only a bug shows a traceback. Every ``--json`` output is strict JSON
(:mod:`flagvision.strict_json`). Hyperparameter flags are generated from ``config.HYPERPARAMS``.

The parser and the light commands (``jobs``, ``study list``, ``weights status``, ``--help``) import
neither torch nor Optuna: each command imports what it needs inside its function.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from flagvision.cli import progress
from flagvision.cli.common import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_USER_ERROR, print_json, workspace_of
from flagvision.config import (
    CNN_IMAGE_SIZE,
    DEFAULT_AUGMENT,
    HYPERPARAMS,
    LR_SCHEDULES,
    VGG_IMAGE_SIZE,
    ConfigError,
    DataConfig,
    HyperParams,
    RunConfig,
    VGGConfig,
    default_image_size,
)
from flagvision.errors import is_user_error, user_message


class _ModelChoices:
    """The model registry's names as argparse choices, read only when argparse needs them.

    Reading the registry imports torch (seconds); parsing ``jobs list`` or ``--help`` never
    touches a ``train`` option's choices, so they do not pay for it.
    """

    def _names(self) -> list[str]:
        from flagvision.models.networks import list_models

        return list_models()

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_hparam_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per hyperparameter, typed and documented from its ParamSpec."""
    group = parser.add_argument_group(
        "hyperparameters (default: the reference study's best preset, with a higher learning rate for the cosine "
        "schedule)"
    )
    for spec in HYPERPARAMS:
        kwargs: dict[str, Any] = {"dest": f"hp_{spec.name}", "default": None}
        help_text = f"{spec.help}; {spec.describe_range()}; default {spec.default}"
        if spec.reference is not None:
            help_text += f"; the reference study's {spec.reference:g}"
        if spec.kind == "categorical":
            kwargs["choices"] = spec.choices
        else:
            kwargs["type"] = int if spec.kind == "int" else float
        group.add_argument(_flag(spec.name), help=help_text, **kwargs)


def resolve_run_config(args: argparse.Namespace) -> RunConfig:
    """defaults < --config file < flags (resolved once, here at the edge)."""
    base: dict[str, Any] = RunConfig().to_dict()
    if getattr(args, "config", None):
        try:
            loaded = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{args.config}: cannot read config ({exc})") from None
        base = RunConfig.from_dict(loaded).to_dict()
    hp = dict(base["hparams"])
    for spec in HYPERPARAMS:
        value = getattr(args, f"hp_{spec.name}", None)
        if value is not None:
            hp[spec.name] = value
    base["hparams"] = HyperParams.from_dict(hp).to_dict()
    data = dict(base["data"])
    if args.data:
        data["path"] = str(Path(args.data).resolve())
    if not getattr(args, "config", None) and getattr(args, "model", None):
        data["image_size"] = default_image_size(args.model)  # VGG-16 reads 64 px unless told otherwise
    for key in ("image_size", "augment", "val_fraction"):
        if getattr(args, key, None) is not None:
            data[key] = getattr(args, key)
    if getattr(args, "no_find_flags", False):
        data["find_flags"] = False
    base["data"] = DataConfig.from_dict(data).to_dict()
    vgg = dict(base["vgg"])
    if args.no_pretrained:
        vgg["pretrained"] = False
    if args.vgg_blocks is not None:
        vgg["blocks"] = args.vgg_blocks
    if args.fine_tune_last:
        vgg["fine_tune_last"] = True
    base["vgg"] = VGGConfig.from_dict(vgg).to_dict()
    for key in ("model", "seed", "patience", "weight_decay", "lr_schedule", "device", "threads"):
        if getattr(args, key, None) is not None:
            base[key] = getattr(args, key)
    return RunConfig.from_dict(base)


def _print_progress(label: str):
    """A tqdm bar on a terminal, nothing when stderr is not one (see :mod:`flagvision.cli.progress`)."""
    return progress.counter(label)


# --- train ------------------------------------------------------------------------------------


def cmd_train(args) -> int:
    from flagvision.data.dataset import load_dataset
    from flagvision.jobs.store import Store
    from flagvision.synthetic.builtin import ensure_builtin
    from flagvision.training.engine import Callback
    from flagvision.training.run import execute_run

    ws = workspace_of(args)
    cfg = resolve_run_config(args)
    store = Store(ws.db_path)  # before the built-in data is built: an unusable database fails at once
    if not cfg.data.path:  # neither --data nor a path in --config: the built-in flags
        builtin = ensure_builtin(ws, progress=_print_progress("building the built-in dataset"))
        cfg = cfg.with_changes(data=cfg.data.with_changes(path=str(builtin)))
    if args.background:
        from flagvision.jobs.queue import submit_training

        job_id, run_id = submit_training(ws, cfg, name=args.name or "")
        print(f"job {job_id} queued (run {run_id}); follow it with: python -m flagvision jobs show {job_id}")
        return 0

    class Printer(Callback):
        def on_epoch_end(self, state, m, improved):
            star = " *" if improved else ""
            print(
                f"epoch {m.epoch:3d}/{state.cfg.hparams.epochs}  train loss {m.train_loss:.4f} acc {m.train_acc:.3f}"
                f"  val loss {m.val_loss:.4f} acc {m.val_acc:.3f}  {m.seconds:.1f}s{star}",
                flush=True,
            )

    data = load_dataset(cfg.data, progress=_print_progress("decoding images"))
    for path, why in data.skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    if data.skipped:
        print(
            f"{len(data.skipped)} unreadable file(s) skipped; training on the other {len(data.train) + len(data.val)}",
            file=sys.stderr,
        )
    started: list[int] = []

    def announce(run_id: int, run_dir: Path) -> None:
        started.append(run_id)
        print(f"run {run_id}: {cfg.label} on {cfg.data.path} → {run_dir}", flush=True)

    try:
        # The bar first: it is cleared before Printer writes the epoch's line.
        callbacks = [progress.EpochBars(), Printer()]
        result = execute_run(
            ws, store, cfg, name=args.name or "", callbacks=callbacks, data=data, on_start=announce
        ).result
    except KeyboardInterrupt:
        progress.close_all()
        if started:
            print(f"interrupted; resume with: python -m flagvision jobs resume --run {started[0]}", file=sys.stderr)
        return 130
    ev = result.evaluation
    if ev is not None:
        print(f"best epoch {result.history.best_epoch}: {ev.accuracy:.2%} on {ev.n_images} held-out images")
    print(f"checkpoint: {result.checkpoint_dir}")
    return 0


# --- evaluate / predict -----------------------------------------------------------------------


def cmd_weights(args) -> int:
    from flagvision.models import weights

    if args.weights_command == "import":
        path = weights.import_weights(args.file)
        print(f"installed VGG-16 ImageNet weights at {path}")
    elif args.weights_command == "download":
        path = _download_weights_with_bar(weights)
        print(f"VGG-16 ImageNet weights ready at {path}")
    else:
        status = weights.weights_status()
        if args.json:
            print_json(status)
        else:
            print(status["message"])
    return 0


def _download_weights_with_bar(weights) -> Path:
    """``weights.download_weights`` with a tqdm bar on stderr (bytes, rate, ETA; none when not a terminal)."""
    import importlib

    # tqdm ships no type information; imported this way it is Any whether or not stubs are installed.
    tqdm = importlib.import_module("tqdm").tqdm
    with tqdm(
        desc="VGG-16 weights", unit="B", unit_scale=True, unit_divisor=1024, disable=not sys.stderr.isatty()
    ) as bar:

        def progress(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        return weights.download_weights(progress)


# --- data -------------------------------------------------------------------------------------


def cmd_data(args) -> int:
    if args.data_command == "synth":
        from flagvision.synthetic.scenes import SynthConfig, synthesize

        given = {"train_per_class": args.train_per_class, "test_per_class": args.test_per_class, "size": args.size}
        cfg = SynthConfig(seed=args.seed, **{k: v for k, v in given.items() if v is not None})
        t0 = time.perf_counter()
        out = Path(args.out)
        if out.exists() and any(out.iterdir()) and not args.force:
            raise ConfigError(f"{out} is not empty; pass --force to replace it")
        synthesize(out, cfg, progress=_print_progress("rendering"), overwrite=args.force)
        total = (cfg.train_per_class + cfg.test_per_class) * 24
        print(f"wrote {total} images to {args.out} in {time.perf_counter() - t0:.1f}s")
    elif args.data_command == "builtin":
        from flagvision.synthetic.builtin import builtin_ready, ensure_builtin

        ws = workspace_of(args)
        if builtin_ready(ws):
            print(f"built-in dataset ready at {ensure_builtin(ws)}")
        else:
            print("building the built-in flag dataset (first start only)…", flush=True)
            t0 = time.perf_counter()
            path = ensure_builtin(ws, progress=_print_progress("rendering"))
            print(f"built-in dataset ready at {path} ({time.perf_counter() - t0:.0f}s)")
        if not args.no_finder:  # the flag finder learns from the same generator: built with the data
            from flagvision.cli.finder import finder_progress
            from flagvision.models.finder import ensure_finder, finder_dir

            t0 = time.perf_counter()
            if ensure_finder(ws, progress=finder_progress):
                print(f"flag finder built at {finder_dir(ws)} ({time.perf_counter() - t0:.0f}s)")
            else:
                print(f"flag finder ready at {finder_dir(ws)}")
    elif args.data_command == "checkset":
        from flagvision.synthetic.checkset import FRAMINGS, PHOTO_FRAMINGS, load_photos, make_checkset

        out = Path(args.out)
        if out.exists() and any(out.iterdir()) and not args.force:
            raise ConfigError(f"{out} is not empty; pass --force to replace it")
        photos, skipped = load_photos(args.photos) if args.photos else ([], [])
        for line in skipped:
            print(f"skipped: {line}")
        manifest = make_checkset(
            out,
            per_class=args.per_class,
            seed=args.seed,
            size=args.size,
            progress=_print_progress("rendering"),
            overwrite=args.force,
            framings=PHOTO_FRAMINGS if photos else FRAMINGS,
            photos=photos,
        )
        print(
            f"wrote {manifest['per_class'] * len(manifest['class_names'])} check images to {out}; "
            f"evaluate a model on them with: python -m flagvision evaluate --checkpoint DIR --data {out}"
        )
    elif args.data_command == "sheet":
        from flagvision.synthetic.scenes import contact_sheet

        path = contact_sheet(Path(args.data), Path(args.out), per_class=args.per_class)
        print(f"wrote {path}")
    elif args.data_command == "import":
        from flagvision.data.importer import import_dataset

        ws = workspace_of(args)
        dest, report = import_dataset(ws, Path(args.path), name=args.name)
        print(f"imported into {dest}: {report['images']} images in {len(report['classes'])} classes")
        for path, why in report["skipped"]:
            print(f"skipped {path}: {why}", file=sys.stderr)
    elif args.data_command == "summary":
        from flagvision.data.folders import summarize

        summary = summarize(args.data)
        if args.json:
            print_json(summary)
        else:
            print(f"{summary['path']}: {len(summary['classes'])} classes")
            for split, counts in summary["splits"].items():
                print(f"  {split}: {sum(counts.values())} images; " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            print("  sizes: " + ", ".join(f"{k} ×{v}" for k, v in summary["sizes"].items()))
            for path, why in summary["unreadable"]:
                print(f"  unreadable {path}: {why}")
    return 0


# --- export -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # Plain imports of the modules that register sub-command groups; each imports nothing heavy at
    # module level (their commands import torch, Optuna... inside their functions).
    from flagvision.cli import finder as finder_cli
    from flagvision.cli import jobs as jobs_cli
    from flagvision.cli import predict as predict_cli
    from flagvision.cli import study as study_cli

    parser = argparse.ArgumentParser(prog="python -m flagvision", description="Train and compare flag classifiers.")
    parser.add_argument("--workspace", help="workspace folder (default $FLAGVISION_HOME or ./workspace)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (foreground, or --background as a job)")
    p.add_argument("--data", help="ImageFolder dataset (default: the built-in flags, built if missing)")
    # metavar: argparse would otherwise list the choices (and import torch) while building the parser.
    p.add_argument("--model", choices=_ModelChoices(), metavar="MODEL", help="%(choices)s (default flag_cnn)")
    p.add_argument("--config", help="JSON RunConfig file; flags override it")
    p.add_argument("--name", help="run name")
    p.add_argument(
        "--image-size", type=int, help=f"network input size in px (default {CNN_IMAGE_SIZE}; VGG-16: {VGG_IMAGE_SIZE})"
    )
    p.add_argument("--augment", type=float, help=f"augmentation strength 0–1 (default {DEFAULT_AUGMENT})")
    p.add_argument("--val-fraction", type=float, help="held-out share without a test/ split (default 0.2)")
    p.add_argument(
        "--no-find-flags",
        action="store_true",
        help="the photos are not flags: predict and evaluate read each whole photo, without the flag finder",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--patience", type=int, help="early stopping patience in epochs (0 = off)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        help="cosine: the learning rate falls from the set rate to zero over the run (default); constant: it stays",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, help="torch threads (0 = all cores)")
    p.add_argument(
        "--no-pretrained",
        action="store_true",
        help='VGG-16 from random initialisation (labelled "random init, not pretrained")',
    )
    p.add_argument("--vgg-blocks", type=int, help="VGG-16 conv blocks kept (1–5)")
    p.add_argument("--fine-tune-last", action="store_true", help="also train the last kept VGG block")
    p.add_argument("--background", action="store_true", help="run as a background job and return at once")
    add_hparam_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("weights", help="VGG-16 ImageNet weights: status, download, import")
    wsub = p.add_subparsers(dest="weights_command", required=True)
    wi = wsub.add_parser("import", help="install a downloaded vgg16-397923af.pth after checking its hash")
    wi.add_argument("file")
    wsub.add_parser(
        "download", help="download from torchvision's server, or $FLAGVISION_WEIGHTS_URL (needs internet, 528 MB)"
    )
    wst = wsub.add_parser("status")
    wst.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("data", help="built-in dataset and user datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    d = dsub.add_parser("synth", help="render the synthetic flag dataset")
    d.add_argument("--out", required=True)
    d.add_argument("--train-per-class", type=int)
    d.add_argument("--test-per-class", type=int, default=None)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--size", type=int, default=None, help="image side in px")
    d.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    d = dsub.add_parser("builtin", help="build the built-in dataset and the flag finder into the workspace if missing")
    d.add_argument("--no-finder", action="store_true", help="only the dataset, not the flag finder")
    d = dsub.add_parser("checkset", help="render check images by a second route (not the generator) to test models on")
    d.add_argument("--out", required=True)
    d.add_argument("--per-class", type=int, default=10)
    d.add_argument("--seed", type=int, default=1234)
    d.add_argument("--size", type=int, default=128, help="image side in px")
    d.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    d.add_argument(
        "--photos",
        help="a folder of your own photographs with no flag in them: the flags are drawn onto crops of them "
        "(a small flag on a pole, a vertical flag) instead of onto drawn backgrounds",
    )
    d = dsub.add_parser("sheet", help="contact sheet of a dataset")
    d.add_argument("--data", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--per-class", type=int, default=2)
    d = dsub.add_parser("import", help="copy a folder or zip of photos into the workspace")
    d.add_argument("path")
    d.add_argument("--name", help="dataset name (default: the folder/zip name)")
    d = dsub.add_parser("summary", help="class counts, sizes, unreadable files")
    d.add_argument("--data", required=True)
    d.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data)

    for register in (predict_cli.register, jobs_cli.register, study_cli.register, finder_cli.register):
        register(sub)
    return parser


def _stdout_to_devnull() -> None:
    """After a closed pipe: point stdout at /dev/null, so that the flush at exit cannot fail again
    (Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 2 user error, 130 interrupted, 1 closed pipe)."""
    # Ctrl-C as Python raises it, and raised again at the next progress report if a library swallowed
    # it (progress.on_ctrl_c); not where Ctrl-C is ignored (a background job of a shell) or handled.
    ours = threading.current_thread() is threading.main_thread()  # only the main thread sets handlers
    previous = signal.getsignal(signal.SIGINT) if ours else None
    ours = ours and previous is signal.default_int_handler
    if ours:
        progress.reset_ctrl_c()
        signal.signal(signal.SIGINT, progress.on_ctrl_c)
    try:
        return _run(argv)
    finally:
        if ours:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def missing_package(module: str) -> str:
    """One line for a package this Python lacks (a command run outside the set-up's virtual environment)."""
    return (
        f"this Python ({sys.executable}) has no {module.split('.')[0]!r} package; `make run` or `make test` "
        "installs everything into .venv: run the command as `.venv/bin/python -m flagvision ...`"
    )


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return status
    except KeyboardInterrupt:
        progress.close_all()
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `... --json | head -c 10`: the reader has gone; end quietly as Unix tools do
        _stdout_to_devnull()
        return EXIT_BROKEN_PIPE
    except ModuleNotFoundError as exc:
        if not exc.name or exc.name.split(".")[0] == "flagvision":
            raise
        print(f"error: {missing_package(exc.name)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:
        if not is_user_error(exc):
            raise
        progress.close_all()
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
