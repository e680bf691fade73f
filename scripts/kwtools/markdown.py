"""Markdown as GitHub renders it, as far as links need: the lines outside
fenced code blocks, and the anchors of the headings (the heading's text in
lower case, punctuation other than "-" and "_" dropped, spaces turned into
"-", and "-1", "-2", ... appended to repeats). Standard library only; used by
scripts/check-links.py and the runbook check of scripts/check-monitoring.sh.
"""

from __future__ import annotations

import re
from pathlib import Path

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def lines_outside_code(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every line outside fenced code blocks."""
    out, fence = [], None
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)[0]
            elif m.group(1)[0] == fence:
                fence = None
            continue
        if fence is None:
            out.append((n, line))
    return out


def heading_text(raw: str) -> str:
    """A heading's text as GitHub renders it: links to their text, no code or emphasis marks."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    text = re.sub(r"<[^>]+>", "", text)
    return text.replace("`", "").replace("*", "")


def headings(path: Path) -> list[tuple[int, str, str]]:
    """(level, text as written, anchor) of every heading, in order."""
    out, seen = [], {}
    for _, line in lines_outside_code(path):
        m = HEADING.match(line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading_text(m.group(2)).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.append((len(m.group(1)), m.group(2).strip(), slug if n == 0 else f"{slug}-{n}"))
    return out


def anchors(path: Path) -> set[str]:
    """Every #anchor a link into `path` may name: its headings' and its <a name|id="...">."""
    found = {anchor for _, _, anchor in headings(path)}
    for _, line in lines_outside_code(path):
        found.update(HTML_ANCHOR.findall(line))
    return found
