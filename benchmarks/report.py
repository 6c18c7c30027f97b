"""Shared by the benchmark scripts: replace one marked block of docs/benchmarks.md, atomically."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_block(key: str, title: str, lines: list[str], doc: Path = DOC) -> None:
    """Put ``lines`` between ``<!-- key:begin -->`` and ``<!-- key:end -->`` in ``doc``.

    A missing block is appended under a ``## title`` heading. The file is written to a temporary name
    and renamed, so an interrupted run never leaves a half-written page.
    """
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = "\n".join([begin, *lines, end])
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n" + block + "\n"
    tmp = doc.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(doc)
