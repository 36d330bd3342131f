"""The Markdown block finder and runner: what runs, what is skipped, and that a wrong example fails."""

from __future__ import annotations

from typing import Any

import pytest
from markdown_blocks import extract_blocks, run_block

SAMPLE = """\
# Title

```python
x = 1
```

```bash
echo "```python is not a fence here"
```

<!-- no-run -->

```python
serve_forever()
```

```python no-run
also_skipped()
```

1. In a list:

   ```python
   y = x + 1
   ```

````markdown
```python
inside_another_fence = True
```
````
"""


def test_finds_python_blocks_with_their_lines_and_no_run_marks() -> None:
    blocks = extract_blocks(SAMPLE)
    assert [(b.line, b.source, b.run) for b in blocks] == [
        (4, "x = 1\n", True),
        (14, "serve_forever()\n", False),
        (18, "also_skipped()\n", False),
        (24, "y = x + 1\n", True),
    ]


def test_blocks_share_a_namespace_in_order() -> None:
    namespace: dict[str, Any] = {}
    for block in extract_blocks(SAMPLE):
        if block.run:
            run_block(block, namespace, "sample.md")
    assert namespace["y"] == 2


def test_a_wrong_example_fails_with_its_markdown_line() -> None:
    (block,) = extract_blocks("intro\n\n```python\na = 1\nassert a == 2, 'docs drifted'\n```\n")
    with pytest.raises(AssertionError, match="docs drifted") as excinfo:
        run_block(block, {}, "broken.md")
    assert str(excinfo.traceback[-1].path) == "broken.md"
    assert excinfo.traceback[-1].lineno + 1 == 5  # the assert is on line 5 of the Markdown text
