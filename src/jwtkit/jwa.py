"""The algorithm layer under the codec: ``jwtkit.jwa.sign`` and ``jwtkit.jwa.verify`` (RFC 7518).

Example:
    >>> from jwtkit import Key, jwa
    >>> key = Key.from_secret(b"0123456789abcdef0123456789abcdef")
    >>> jwa.verify("HS256", key, b"input", jwa.sign("HS256", key, b"input"))
    True
"""

from __future__ import annotations

from jwtkit.jose.jwa import ALGORITHMS, sign, verify

__all__ = ["ALGORITHMS", "sign", "verify"]
