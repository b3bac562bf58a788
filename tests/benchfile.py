"""BENCHMARKS.md holds the reports of several benchmarks: each replaces its own sections
("## " headings) and leaves the others' alone."""

from __future__ import annotations

import re
from pathlib import Path

HEADING = re.compile(r"^## .*$", re.M)


def _split(text: str) -> tuple[str, dict[str, str]]:
    """(what comes before the first "## " heading, {heading: its section})."""
    starts = [m.start() for m in HEADING.finditer(text)]
    head = text[: starts[0]] if starts else text
    sections = {}
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        section = text[start:end]
        sections[section.splitlines()[0]] = section
    return head, sections


def merge_report(path: Path, report: str, *, replace_head: bool = False) -> None:
    """Write `report`'s sections into `path`: a section with the same heading is
    replaced in place, a new one goes at the end; the others stay as they were. The
    text before the first heading is replaced only with `replace_head`."""
    new_head, new_sections = _split(report)
    old_head, old_sections = _split(path.read_text()) if path.exists() else ("", {})
    head = new_head if replace_head or not old_head.strip() else old_head
    merged = dict(old_sections)
    for heading, section in new_sections.items():
        merged[heading] = section.rstrip("\n") + "\n\n"
    text = head.rstrip("\n") + "\n\n" + "".join(merged.values())
    path.write_text(text.rstrip("\n") + "\n")


def publish(report: str, out: Path | None, *, replace_head: bool = False) -> None:
    """Print a benchmark's report and, given a path, merge it into that file."""
    print(report)
    if out:
        merge_report(out, report, replace_head=replace_head)
