#!/usr/bin/env python3
"""Checks the relative links of keywatch's documentation.

Every relative link in README.md, docs/*.md, infra/README.md, dashboards/README.md,
benches/README.md and fuzz/README.md (or the files given as arguments) must name a file or directory that
exists, and every #anchor a heading of the target Markdown file, under GitHub's rules:
the heading's text in lower case, punctuation other than "-" and "_" dropped, spaces
turned into "-", and "-1", "-2", ... appended to repeats. Links to other sites
(http:, https:, mailto:) are not followed. Links inside code blocks and code spans are
not links.

    scripts/check-links.py            the default set of files
    scripts/check-links.py FILE...    those files

Prints one line per broken link and a summary; exits 1 when any link is broken.
Python 3 standard library only (and scripts/kwtools/markdown.py, which the
runbook check of scripts/check-monitoring.sh shares).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from kwtools import markdown  # scripts/kwtools/markdown.py

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILES = ["README.md", "docs/*.md", "infra/README.md", "dashboards/README.md", "benches/README.md", "fuzz/README.md"]

INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def anchors(path: Path, cache: dict[Path, set[str]]) -> set[str]:
    if path not in cache:
        cache[path] = markdown.anchors(path)
    return cache[path]


def links(path: Path) -> list[tuple[int, str]]:
    out = []
    for n, line in markdown.lines_outside_code(path):
        m = REFERENCE_DEF.match(line)
        if m:
            out.append((n, m.group(1)))
            continue
        line = CODE_SPAN.sub("", line)
        out.extend((n, m.group(1)) for m in INLINE_LINK.finditer(line))
    return out


def check(path: Path, cache: dict[Path, set[str]]) -> tuple[int, list[str]]:
    errors, count = [], 0
    rel = path.relative_to(ROOT)
    for n, target in links(path):
        if not target or EXTERNAL.match(target):
            continue
        count += 1
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{rel}:{n}: {target}"
        if not dest.exists():
            errors.append(f"{where}: {file_part} does not exist")
            continue
        if anchor:
            if dest.is_dir() or dest.suffix.lower() != ".md":
                errors.append(f"{where}: an anchor into {dest.relative_to(ROOT)}, which is not a Markdown file")
            elif anchor.lower() not in anchors(dest, cache):
                errors.append(f"{where}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return count, errors


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    if argv:
        files = [Path(a).resolve() for a in argv]
    else:
        files = sorted({p.resolve() for pattern in DEFAULT_FILES for p in ROOT.glob(pattern)})
    missing = [f for f in files if not f.is_file()]
    if missing:
        for f in missing:
            print(f"check-links: no such file: {f}")
        return 2
    cache: dict[Path, set[str]] = {}
    total, errors = 0, []
    for f in files:
        count, errs = check(f, cache)
        total += count
        errors.extend(errs)
    for e in errors:
        print(e)
    print(f"check-links: {total} relative links in {len(files)} files, {len(errors)} broken")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
