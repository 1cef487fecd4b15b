"""The code map (docs/code-map.md) stays true: every file it names exists, and the README sends newcomers to it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "docs" / "code-map.md"


def named_paths(text: str) -> set[str]:
    """Paths in backticks that end in ``.py`` or ``/`` (``sales/slotqueue.py``, ``codex_node/stores/``)."""
    return set(re.findall(r"`([\w./+-]+(?:\.py|/))`", text))


def exists(name: str) -> bool:
    """A name is found from the repository root, from ``codex_node/``, or (a bare file) in one of its packages."""
    if (ROOT / name).exists() or (ROOT / "codex_node" / name).exists():
        return True
    if "/" not in name.rstrip("/"):
        return any(ROOT.joinpath("codex_node").rglob(name))
    return any(ROOT.joinpath("codex_node").glob(f"*/{name}"))


def test_every_file_the_code_map_names_exists() -> None:
    names = named_paths(MAP.read_text())
    assert len(names) > 40  # the map names the files of every layer and every step of a sale
    assert sorted(n for n in names if not exists(n)) == []


def test_the_readme_links_the_code_map() -> None:
    assert "(docs/code-map.md)" in (ROOT / "README.md").read_text()
