"""Run every benchmark section (`python -m benchmarks [section ...]`): jose, policy, store, web, nodes.

Each section is a module ``benchmarks.bench_<name>`` with ``main(argv: list[str]) -> None`` that prints its
own tables. A section whose peers or binaries are missing says so and goes on. ``soak`` (``make soak``) is
not in the default set: it runs for 5 minutes and exits non-zero when the server fails it.
"""

from __future__ import annotations

import importlib
import platform
import sys
import time

SECTIONS = ["jose", "policy", "store", "web", "nodes"]


def run(argv: list[str]) -> None:
    chosen = [a for a in argv if not a.startswith("-")] or SECTIONS
    print(f"# jwtkit benchmarks  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  "
          f"Python {platform.python_version()}  {platform.machine()}")
    for name in chosen:
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
        except ModuleNotFoundError as exc:
            print(f"\n## {name}: not available ({exc})")
            continue
        module.main([a for a in argv if a.startswith("-")])


if __name__ == "__main__":
    run(sys.argv[1:])
