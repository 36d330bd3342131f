"""Run every ```python block of README.md and docs/*.md as tests, so the docs cannot drift from the code.

``documents.txt`` in this folder lists the files (globs relative to the repository root). pytest collects it
like a test file: each Markdown file becomes a collector and each block a test item, named by its line. The
blocks of one file run in order in one shared namespace, in a scratch working directory, with the
environment restored afterwards; after a failing block the rest of that file is skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from markdown_blocks import Block, extract_blocks, run_block

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = "documents.txt"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name == MANIFEST and file_path.parent == Path(__file__).parent:
        return Manifest.from_parent(parent, path=file_path)
    return None


class Manifest(pytest.File):
    """The list of Markdown files whose code runs."""

    def collect(self) -> Iterator[pytest.Collector]:
        seen: set[Path] = set()
        for raw in self.path.read_text().splitlines():
            pattern = raw.split("#", 1)[0].strip()
            if not pattern:
                continue
            for path in sorted(ROOT.glob(pattern)):
                if path.is_file() and path not in seen:
                    seen.add(path)
                    yield MarkdownDocument.from_parent(self, name=str(path.relative_to(ROOT)), path=path)


class MarkdownDocument(pytest.Collector):
    """One Markdown file; its blocks share ``namespace`` and a working directory."""

    def __init__(self, *, path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.markdown_path = path
        self.namespace: dict[str, Any] = {"__name__": f"markdown:{path.name}"}
        self.failed_at: int | None = None
        self._workdir: Path | None = None

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="jwtkit-docs-"))
        return self._workdir

    def teardown(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def collect(self) -> Iterator[pytest.Item]:
        for block in extract_blocks(self.markdown_path.read_text(encoding="utf-8")):
            yield MarkdownBlock.from_parent(self, name=f"line {block.line}", block=block)


class MarkdownBlock(pytest.Item):
    """One ```python block."""

    def __init__(self, *, block: Block, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.block = block
        if not block.run:
            self.add_marker(pytest.mark.skip(reason="marked no-run in the Markdown"))

    @property
    def document(self) -> MarkdownDocument:
        parent = self.parent
        assert isinstance(parent, MarkdownDocument)
        return parent

    def runtest(self) -> None:
        document = self.document
        if document.failed_at is not None:
            pytest.skip(f"the block at line {document.failed_at} of this file failed first")
        saved_env = dict(os.environ)
        saved_cwd = os.getcwd()
        os.chdir(document.workdir)
        try:
            run_block(self.block, document.namespace, str(document.markdown_path))
        except BaseException:
            document.failed_at = self.block.line
            raise
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        path = self.document.markdown_path.relative_to(ROOT)
        frames = [entry for entry in excinfo.traceback if str(entry.path) == str(self.document.markdown_path)]
        where = f"{path}:{frames[-1].lineno + 1}" if frames else f"{path} (block at line {self.block.line})"
        return f"{where}: {excinfo.typename}: {excinfo.value}\n\n{self.block.source}"

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.document.markdown_path, self.block.line - 1, f"{self.document.name}:{self.block.line}"
