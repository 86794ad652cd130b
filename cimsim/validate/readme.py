"""The README's generated tables: each sits between a marker naming the command that prints it,

    <!-- cimsim validate --markdown --table dazzi -->
    ...
    <!-- end of generated table -->

(`<!-- cimsim validate --markdown -->` for the checks). `update` rewrites them with what the
command prints now, `stale` names those that differ (`tools/readme_tables.py [--check]`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cimsim.validate.measure import ROOT

README = ROOT / "README.md"
END = "<!-- end of generated table -->"
_MARK = re.compile(r"^<!-- cimsim validate --markdown(?: --table (?P<table>\w+))? -->\n(?P<body>.*?)^"
                   + re.escape(END) + "$", re.S | re.M)
CHECKS_TABLE = "checks"
"""The block name of the checks table (`cimsim validate --markdown`)."""


@dataclass(frozen=True)
class Block:
    """One generated table in the README."""

    name: str
    """A `TABLES` name, or `CHECKS_TABLE`."""
    body: str
    """Its text between the markers, as the README has it."""
    span: tuple[int, int]
    """Where the body is in the README's text."""


def blocks(text: str) -> list[Block]:
    """The generated tables of README text, in order."""
    return [Block(mt["table"] or CHECKS_TABLE, mt["body"], mt.span("body")) for mt in _MARK.finditer(text)]


def render(name: str) -> str:
    """What the block's command prints now, as the block's body (a trailing newline)."""
    from cimsim.validate.command import format_markdown, validate
    from cimsim.validate.tables import table_markdown

    return (format_markdown(validate()) if name == CHECKS_TABLE else table_markdown(name)) + "\n"


def update(path: Path = README, only: set[str] | None = None) -> list[str]:
    """Rewrite the README's generated tables (all, or the named ones); return the names that changed."""
    text = path.read_text()
    changed, out, pos = [], [], 0
    for b in blocks(text):
        out.append(text[pos:b.span[0]])
        body = render(b.name) if only is None or b.name in only else b.body
        changed += [b.name] if body != b.body else []
        out.append(body)
        pos = b.span[1]
    out.append(text[pos:])
    if changed:
        path.write_text("".join(out))
    return changed


def stale(path: Path = README, only: set[str] | None = None) -> list[str]:
    """The names of the README's generated tables (all, or the named ones) that differ from their command."""
    return [b.name for b in blocks(path.read_text()) if (only is None or b.name in only) and render(b.name) != b.body]


__all__ = ["CHECKS_TABLE", "END", "README", "Block", "blocks", "render", "stale", "update"]
