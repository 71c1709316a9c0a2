"""``python -m flagvision finder …``: build the flag finder into the workspace, or say whether it is there.

Picked up by :func:`flagvision.cli.main.build_parser` through ``register``; the commands import the
finder (and torch) inside their functions, so the parser stays light.
"""

from __future__ import annotations

import argparse
import sys
import time

from flagvision.strict_json import dumps as json_dumps


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finder", help="the flag finder (finds the flags in a photo before classifying): train, status")
    fsub = p.add_subparsers(dest="finder_command", required=True)
    f = fsub.add_parser("train", help="render annotated scenes and train the finder into <workspace>/finder")
    f.add_argument("--scenes", type=int, help="training scenes (default 4000)")
    f.add_argument("--val-scenes", type=int, help="held-out scenes the boxes are measured on (default 200)")
    f.add_argument("--epochs", type=int, help="passes over them (default 10)")
    f.add_argument("--width", type=int, help="channels of the network's stem, 4..64 (default 24)")
    f.add_argument("--seed", type=int, help="random seed (default 0)")
    f.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    f.add_argument("--json", action="store_true", help="print the finder's card as JSON at the end")
    f = fsub.add_parser("status", help="whether the workspace has a finder, and its figures")
    f.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_finder)


def finder_progress(stage: str, done: int, total: int) -> None:
    if stage == "rendering scenes":
        print(f"\r{stage}: {done}/{total}", end="\n" if done >= total else "", file=sys.stderr, flush=True)
    else:
        print(f"{stage}: epoch {done}/{total}", file=sys.stderr, flush=True)


def cmd_finder(args) -> int:
    from flagvision.models.finder import FinderConfig, build_finder, finder_dir, finder_status
    from flagvision.workspace import Workspace

    ws = Workspace.open(args.workspace)
    if args.finder_command == "status":
        status = finder_status(ws)
        if args.json:
            print(json_dumps(status, indent=2))
        elif status["built"]:
            m = status["metrics"]
            share = m.get("val_iou50_share")
            print(f"flag finder: built at {status['path']}")
            if share is not None:
                print(f"  held-out scenes: {share:.0%} of flags boxed (IoU >= 0.5), "
                      f"{m.get('val_empty_right_share', 0):.0%} of scenes without a flag left empty")  # fmt: skip
        else:
            print(f"flag finder: not built ({status['message']})")
        return 0
    names = ("scenes", "val_scenes", "epochs", "width", "seed", "threads")
    overrides = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    cfg = FinderConfig.from_dict({**FinderConfig().to_dict(), **overrides})
    started = time.perf_counter()
    finder = build_finder(ws, cfg, progress=finder_progress)
    m = finder.card["metrics"]
    if args.json:
        print(json_dumps(finder.card, indent=2))
    else:
        print(f"flag finder built in {time.perf_counter() - started:.0f} s: {finder_dir(ws)}")
        if "val_iou50_share" in m:
            print(f"  held-out scenes: {m['val_iou50_share']:.0%} of flags boxed (IoU >= 0.5), "
                  f"{m['val_empty_right_share']:.0%} of scenes without a flag left empty")  # fmt: skip
    return 0
