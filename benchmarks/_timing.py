"""Timing and reporting shared by every benchmark section: medians of repeated runs, printed as tables."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def median_us(fn: Callable[[], object], *, number: int = 2000, repeat: int = 7) -> float:
    """Median over ``repeat`` runs of the mean time of one call, in microseconds (after one warm-up run)."""
    for _ in range(min(number, 200)):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(samples)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table; cells are formatted already or are numbers shown with 2 decimals."""
    cells = [[c if isinstance(c, str) else f"{c:,.2f}" for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = [f"\n## {title}", "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference else "n/a"
