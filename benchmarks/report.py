"""What the benchmarks share for their reports: a section of BENCHMARKS.md between its own markers."""

from __future__ import annotations

from pathlib import Path


def write_section(section: str, path: Path, start: str, end: str) -> None:
    """Put section (which begins with start and ends with end) into path between those markers, replacing an
    earlier one, or append it; the rest of the file stays."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")
