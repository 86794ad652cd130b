"""Regenerate (or check) the README's reproduction tables: every block between a
`<!-- cimsim validate --markdown [--table NAME] -->` marker and `<!-- end of generated table -->`
becomes what that command prints now (`cimsim.validate.readme`).

    python tools/readme_tables.py                 # rewrite every generated table in README.md
    python tools/readme_tables.py --check         # exit 1 naming the tables that differ
    python tools/readme_tables.py --only raella   # just these (comma-separated)

The test suite checks the fast tables (`tests/test_validate.py`); `--check` also covers the slow
ones (`raella_source`, `meng_lu`: about two minutes).
"""

from __future__ import annotations

import argparse
import sys

from cimsim.validate.readme import README, blocks, stale, update


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="do not write: exit 1 if a table differs")
    p.add_argument("--only", metavar="T1,T2", help="only these tables (checks, or a --table name)")
    args = p.parse_args(argv)
    known = {b.name for b in blocks(README.read_text())}
    only = set(args.only.split(",")) if args.only else None
    if only and only - known:
        print(f"readme_tables: no generated table {sorted(only - known)[0]!r} in README.md "
              f"(there: {', '.join(sorted(known))})", file=sys.stderr)
        return 2
    if args.check:
        bad = stale(only=only)
        print("README tables differ from their command: " + ", ".join(bad) if bad else "README tables up to date")
        return 1 if bad else 0
    changed = update(only=only)
    print("rewrote: " + ", ".join(changed) if changed else "README tables up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
