"""The algorithm layer under the codec: ``jwtkit.jwa.sign`` and ``jwtkit.jwa.verify`` (RFC 7518).

``ALGORITHMS`` is the one frozen table of the algorithms jwtkit knows (``none`` is never among them).

Example:
    >>> from jwtkit import Key, jwa
    >>> key = Key.from_secret(b"0123456789abcdef0123456789abcdef")
    >>> jwa.verify("HS256", key, b"input", jwa.sign("HS256", key, b"input"))
    True
"""

from __future__ import annotations

from jwtkit._jose.algorithms import ALGORITHMS
from jwtkit._jose.signing import sign, verify

__all__ = ["ALGORITHMS", "sign", "verify"]

# Show the public path in reprs, tracebacks and docs, as jwtkit/__init__.py does for its names.
sign.__module__ = verify.__module__ = __name__
