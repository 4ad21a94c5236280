"""The README's module table is the map a newcomer reads first: it must name every module and
package of clockd/, and nothing that is not there."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "clockd"
_NAME = re.compile(r"`([\w/]+(?:\.py|/))`")


def module_table(readme: str) -> list[tuple[str, str]]:
    """(first cell, second cell) of each row of the table headed `| module | job |`."""
    lines = readme.splitlines()
    start = lines.index("| module | job |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((cells[0], cells[1]))
    return rows


def listed_paths(rows: list[tuple[str, str]]) -> set[str]:
    """Paths relative to clockd/: the modules a row names (`zk/wire.py` names the package
    `zk/` too), and for a package row (`store/`) also the modules its description names inside
    that package."""
    paths: set[str] = set()
    for names, job in rows:
        for name in _NAME.findall(names):
            paths.add(name)
            paths.update(f"{parent}/" for parent in Path(name).parents if parent != Path("."))
            if name.endswith("/"):
                paths.update(name + inner for inner in _NAME.findall(job))
    return paths


def tree_paths() -> set[str]:
    """Every module and package of clockd/, relative to it. A package's __init__.py is the
    package itself, and the migration scripts are listed as their folder."""
    paths: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if "migrations" in relative.parts:
            paths.add(f"{Path(*relative.parts[: relative.parts.index('migrations') + 1])}/")
            continue
        if relative.name == "__init__.py":
            if relative.parent != Path("."):
                paths.add(f"{relative.parent}/")
            continue
        paths.add(str(relative))
    return paths


def test_the_readme_module_table_matches_the_tree() -> None:
    listed = listed_paths(module_table((REPO / "README.md").read_text(encoding="utf-8")))
    tree = tree_paths()
    assert sorted(listed - tree) == [], "listed in README.md but not in clockd/"
    assert sorted(tree - listed) == [], "in clockd/ but not listed in README.md's module table"


def test_the_check_sees_a_package_row_and_its_modules() -> None:
    rows = module_table(
        "| module | job |\n|---|---|\n| `cli.py` | the command line |\n"
        "| `zk/` | `wire.py` codec, `client.py` session; `clockd poll` uses it |\n\nAfter.\n"
    )
    assert rows == [
        ("`cli.py`", "the command line"),
        ("`zk/`", "`wire.py` codec, `client.py` session; `clockd poll` uses it"),
    ]
    assert listed_paths(rows) == {"cli.py", "zk/", "zk/wire.py", "zk/client.py"}
