"""The algorithm layer over keys: ``sign`` and ``verify`` (RFC 7518), published as :mod:`jwtkit.jwa`.

A key signs and verifies only the algorithm it is bound to (R5), and the name must be in the table (R4). The
work itself is the key's precomputed signer or verifier, built from its table entry at construction.
"""

from __future__ import annotations

from jwtkit._jose.algorithms import ALGORITHMS
from jwtkit._jose.errors import DisallowedAlgorithm, UnusableKey
from jwtkit._jose.keys import Key

__all__ = ["sign", "verify"]


def _bound(alg: str, key: Key) -> None:
    if not isinstance(key, Key):
        raise TypeError("key must be a jwtkit.Key")
    # R5: a key signs and verifies only the algorithm it is bound to; the table is never bypassed (R4).
    if key._alg != alg or alg not in ALGORITHMS:
        raise DisallowedAlgorithm("unsupported algorithm, or not the key's algorithm")


def sign(alg: str, key: Key, signing_input: bytes) -> bytes:
    """Sign ``signing_input`` with ``key``, which must be bound to ``alg`` and able to sign.

    Args:
        alg: the JWS algorithm name, e.g. ``"HS256"``.
        key: a :class:`jwtkit.Key` bound to ``alg`` (an HMAC key or a private key).
        signing_input: the bytes to sign (for JWS, ``header.payload``).

    Raises:
        DisallowedAlgorithm: ``algorithm``, when ``alg`` is unknown or not the key's.
        UnusableKey: ``key``, when the key cannot sign (a public key, or ``use``/``key_ops`` forbid it).

    Example:
        >>> from jwtkit import Key, jwa
        >>> key = Key.from_secret(b"k" * 32)
        >>> len(jwa.sign("HS256", key, b"data"))
        32
    """
    _bound(alg, key)
    signer = key._signer
    if signer is None:
        raise UnusableKey("key cannot sign")
    return signer(signing_input if type(signing_input) is bytes else bytes(signing_input))


def verify(alg: str, key: Key, signing_input: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is valid for ``signing_input`` under ``key``, which must be bound to ``alg``.

    Returns False for any signature that does not verify, whatever its length or content; the length is
    checked before any crypto call (R10).

    Raises:
        DisallowedAlgorithm: ``algorithm``, when ``alg`` is unknown or not the key's.
        UnusableKey: ``key``, when ``use``/``key_ops`` forbid verification with this key.

    Example:
        >>> from jwtkit import Key, jwa
        >>> key = Key.from_secret(b"k" * 32)
        >>> jwa.verify("HS256", key, b"data", jwa.sign("HS256", key, b"data"))
        True
    """
    _bound(alg, key)
    verifier = key._verifier
    if verifier is None:
        raise UnusableKey("key may not verify")
    if len(signature) != key._sig_size:
        return False
    try:
        if type(signing_input) is not bytes or type(signature) is not bytes:
            signing_input, signature = bytes(signing_input), bytes(signature)
        return verifier(signing_input, signature)
    except Exception:  # A verifier only ever says no.
        return False
