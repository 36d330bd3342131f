"""Confusable usernames: the skeleton of Unicode Technical Standard #39 (§4), over Unicode's own data.

Two strings are confusable when their skeletons are equal: ``аlice`` with a Cyrillic ``а`` and ``alice``,
``rn`` and ``m``, ``paypa1`` and ``paypal``. The repositories keep each account's skeleton under a unique
index, so a look-alike of an existing name is refused by the database itself, across nodes and races.

The data is ``service/confusables.txt``, Unicode 17.0.0's ``confusables.txt`` as published for UTS #39
(header: Date 2025-07-22; 6,565 mappings; sha256 in tests/service/test_confusables.py). No package on PyPI
computes skeletons from current data without a C build: PyICU's ``SpoofChecker`` needs libicu headers and a
compiler, icu4py (bundled ICU 78) has no spoof checker, and confusable-homoglyphs ships Unicode 15 groups
rather than the prototype mapping. The algorithm is three lines; the data is the part to get right, and it is
Unicode's file, unchanged.
"""

from __future__ import annotations

import functools
import unicodedata
from importlib import resources

__all__ = ["confusables_version", "skeleton"]

_DATA = "confusables.txt"


@functools.cache
def _prototypes() -> dict[int, str]:
    """``confusables.txt`` as a ``str.translate`` table: each source code point to its prototype."""
    table: dict[int, str] = {}
    text = resources.files("jwtkit.service").joinpath(_DATA).read_text("utf-8-sig")
    for line in text.splitlines():
        data = line.split("#", 1)[0].strip()
        if not data:
            continue
        source, target, _kind = (field.strip() for field in data.split(";"))
        table[int(source, 16)] = "".join(chr(int(point, 16)) for point in target.split())
    return table


def confusables_version() -> str:
    """The Unicode version of the bundled data, from its header (``# Version: 17.0.0``)."""
    text = resources.files("jwtkit.service").joinpath(_DATA).read_text("utf-8-sig")
    for line in text.splitlines():
        if line.startswith("# Version:"):
            return line.split(":", 1)[1].strip()
    raise LookupError(f"no version line in {_DATA}")


def skeleton(text: str) -> str:
    """UTS #39 ``skeleton(X)``: NFD, each code point replaced by its prototype, NFD again.

    Example:
        >>> skeleton("\\u0430lice") == skeleton("alice")
        True
        >>> skeleton("m") == skeleton("rn")
        True
    """
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", text).translate(_prototypes()))
