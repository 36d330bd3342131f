"""The FastAPI examples of README.md and docs/fastapi.md run twice in a row in the same directory, as a reader
runs them twice: the second run finds the first one's key file, users and sessions (./jwtkit.key,
./jwtkit.db). Once each, they already run with the other docs (tests/docs)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
def _markdown_blocks() -> ModuleType:
    """tests/docs' block finder and runner (the module its conftest imports from that folder)."""
    if "markdown_blocks" in sys.modules:
        return sys.modules["markdown_blocks"]
    spec = importlib.util.spec_from_file_location("markdown_blocks",
                                                  ROOT / "tests" / "docs" / "markdown_blocks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["markdown_blocks"] = module
    spec.loader.exec_module(module)
    return module


markdown_blocks = _markdown_blocks()


@pytest.mark.parametrize("document", ["README.md", "docs/fastapi.md"])
def test_the_example_runs_twice_in_one_directory(document: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / document
    text = path.read_text(encoding="utf-8")
    blocks = [block for block in markdown_blocks.extract_blocks(text) if block.run]
    assert blocks
    monkeypatch.chdir(tmp_path)
    saved = dict(os.environ)
    try:
        for run in (1, 2):
            namespace: dict[str, object] = {"__name__": f"markdown:{path.name}:{run}"}
            for block in blocks:
                markdown_blocks.run_block(block, namespace, str(path))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert (tmp_path / "jwtkit.db").exists()
