"""Find the ```python blocks of a Markdown file, and run a file's blocks in order in one namespace.

A block is skipped when its fence says ``python no-run`` or when the line just before the fence (blank lines
aside) is ``<!-- no-run -->``; use that sparingly, e.g. for a block that starts a server and never returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Block", "extract_blocks", "run_block"]

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")
_NO_RUN_COMMENT = re.compile(r"^\s*<!--\s*no-run\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: the line of its first code line (1-based), its source, and whether it runs."""

    line: int
    source: str
    run: bool


def extract_blocks(text: str) -> list[Block]:
    """Every ```python block of ``text``, in order; other languages are skipped, fences matched exactly."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    previous = ""  # the last non-blank line before the current position
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            if lines[index].strip():
                previous = lines[index]
            index += 1
            continue
        fence, indent = match.group("fence"), len(match.group("indent"))
        words = match.group("info").split()
        language = words[0].lower() if words else ""
        start = index + 1
        end = start
        while end < len(lines):
            closing = _FENCE.match(lines[end])
            if (
                closing
                and closing.group("fence")[0] == fence[0]
                and len(closing.group("fence")) >= len(fence)
                and not closing.group("info").strip()
            ):
                break
            end += 1
        if language == "python":
            body = [line[indent:] if line[:indent].strip() == "" else line for line in lines[start:end]]
            runs = "no-run" not in words[1:] and not _NO_RUN_COMMENT.match(previous)
            blocks.append(Block(line=start + 1, source="\n".join(body) + "\n", run=runs))
        previous = lines[end] if end < len(lines) else ""
        index = end + 1
    return blocks


def run_block(block: Block, namespace: dict[str, Any], filename: str) -> None:
    """Execute one block in ``namespace``; tracebacks point at the block's lines in the Markdown file."""
    # Leading newlines shift the compiled line numbers onto the Markdown file's own.
    code = compile("\n" * (block.line - 1) + block.source, filename, "exec")
    exec(code, namespace)  # running the documentation's own examples is the point
