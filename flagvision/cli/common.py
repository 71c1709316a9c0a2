"""What every command group of the CLI shares: exit codes, strict JSON output, the workspace a command
works in.
"""

from __future__ import annotations

from typing import Any

from flagvision import strict_json

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_BROKEN_PIPE = 1


def print_json(data: Any) -> None:
    """Print ``data`` as strict JSON (non-finite floats as null): what every ``--json`` writes."""
    print(strict_json.dumps(data, indent=2, default=str))


def workspace_of(args):
    from flagvision.workspace import Workspace

    return Workspace.open(args.workspace)
