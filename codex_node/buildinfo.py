"""What this build of codex-node is: version, source revision, and which compiled contracts it ships.

Shown by ``GET /api/codex/v1/debug/info`` (``codex: {version, revision, contracts}``, as nim-codex) and by the
``codex_node_info`` metric. Each value is computed once per process.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from importlib import resources
from pathlib import Path

from codex_node import __version__

UNKNOWN = "unknown"
_PACKAGE_DIR = Path(__file__).resolve().parent


def version() -> str:
    return f"v{__version__}"


@functools.cache
def revision() -> str:
    """Short git commit of the checkout the package runs from, or ``unknown`` (e.g. an installed wheel)."""
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "--short", "HEAD"],
            cwd=_PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    # Only our own checkout counts: an installed package may sit inside some unrelated repository.
    if len(top) != 2 or Path(top[0]).resolve() != _PACKAGE_DIR.parent:
        return UNKNOWN
    return top[1]


@functools.cache
def contracts() -> str:
    """Short hash of the compiled marketplace artifact this package deploys and talks to."""
    try:
        data = resources.files("codex_node").joinpath("market/artifacts/Marketplace.json").read_bytes()
    except OSError:
        return UNKNOWN
    return hashlib.sha256(data).hexdigest()[:12]
