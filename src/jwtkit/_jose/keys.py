"""Keys bound to one algorithm (:class:`Key`) and key sets selected by ``kid`` (:class:`KeySet`).

All the work happens at construction (R5, R6): the JWK or PEM is validated fully, the ``cryptography`` key is
loaded, and the signer, verifier, exact signature length and the encoded default JOSE header are precomputed.
After that, signing and verifying only look things up.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from jwtkit._jose import base64url
from jwtkit._jose.algorithms import CURVES, Algorithm, Family, Signer, Verifier, lookup
from jwtkit._jose.errors import DisallowedAlgorithm, UnusableKey
from jwtkit._jose.strictjson import dumps

__all__ = ["MAX_KEYS_WITHOUT_KID", "MAX_RSA_BITS", "MIN_RSA_BITS", "MLDSA_SEED_SIZE", "Key", "KeySet"]

#: RSA moduli below this size are refused (RFC 7518 §3.3, R6).
MIN_RSA_BITS = 2048
#: RSA moduli above this size are refused (OpenSSL's OPENSSL_RSA_MAX_MODULUS_BITS).
MAX_RSA_BITS = 16384
#: A token without ``kid`` is tried against at most this many keys bound to its ``alg`` (R9).
MAX_KEYS_WITHOUT_KID = 4

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import mldsa

    _MLDSAPrivate = mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey
    _MLDSAPublic = mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey
    _PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | _MLDSAPrivate
    _PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | _MLDSAPublic

#: RFC 9964: an AKP ``priv`` for ML-DSA is the 32-byte seed (FIPS 204 KeyGen's xi), never the expanded key.
MLDSA_SEED_SIZE = 32
_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_PRIVATE_LABELS = frozenset({b"PRIVATE KEY", b"ENCRYPTED PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY"})
_PUBLIC_LABELS = frozenset({b"PUBLIC KEY", b"RSA PUBLIC KEY"})
_RSA_PRIVATE = ("d", "p", "q", "dp", "dq", "qi")
_B64 = base64url.encode


def _b64(data: bytes) -> str:
    return _B64(data).decode("ascii")


def _uint_bytes(value: int, size: int = 0) -> bytes:
    return value.to_bytes(size or max(1, (value.bit_length() + 7) // 8), "big")


def _check_kid(kid: object) -> str | None:
    if kid is not None and type(kid) is not str:
        raise TypeError("kid must be a string or None")
    return kid


class Key:
    """A signing or verification key bound to exactly one JWS algorithm.

    Build keys with the named constructors (:meth:`from_secret`, :meth:`from_pem`, :meth:`from_jwk`,
    :meth:`generate`); each validates and precomputes everything, and refuses what RFC 7518 forbids
    (HMAC secrets shorter than the hash, RSA moduli under 2048 bits, off-curve points). Keys compare and hash
    by value (algorithm, ``kid``, public/private, ``use``/``key_ops`` and key material). ``repr()`` shows the
    algorithm and ``kid`` only.

    Example:
        >>> from jwtkit import Key
        >>> key = Key.from_secret(b"0123456789abcdef0123456789abcdef", kid="k1")
        >>> key
        Key(alg='HS256', kid='k1', private=True)
    """

    __slots__ = (
        "_alg",
        "_header",
        "_headers_by_typ",
        "_identity",
        "_key_ops",
        "_kid",
        "_private",
        "_public",
        "_secret",
        "_sig_size",
        "_signer",
        "_spec",
        "_use",
        "_verifier",
    )

    _alg: str
    _kid: str | None
    _spec: Algorithm
    _secret: bytes | None
    _private: _PrivateKey | None
    _public: _PublicKey | None
    _use: str | None
    _key_ops: frozenset[str] | None
    _signer: Signer | None
    _verifier: Verifier | None
    _sig_size: int
    _header: bytes
    _headers_by_typ: dict[str | None, bytes]
    _identity: tuple[Any, ...] | None

    def __init__(self) -> None:
        raise TypeError("use Key.from_secret, Key.from_pem, Key.from_jwk or Key.generate")

    # --- construction -------------------------------------------------------------------------------------

    @classmethod
    def _build(
        cls,
        spec: Algorithm,
        kid: str | None,
        *,
        secret: bytes | None = None,
        private: _PrivateKey | None = None,
        public: _PublicKey | None = None,
        use: str | None = None,
        key_ops: frozenset[str] | None = None,
    ) -> Key:
        self = object.__new__(cls)
        self._alg, self._kid, self._spec = spec.name, kid, spec
        self._secret, self._private, self._public = secret, private, public
        self._use, self._key_ops = use, key_ops
        self._identity = None
        family = spec.family
        # R5: "use" other than "sig", or "key_ops" without the operation, makes the key unusable for it.
        may_sign = use in (None, "sig") and (key_ops is None or "sign" in key_ops)
        may_verify = use in (None, "sig") and (key_ops is None or "verify" in key_ops)
        signer: Signer | None = None
        verifier: Verifier | None = None
        if family is Family.HMAC:
            if secret is None:
                raise UnusableKey("HMAC key without a secret")
            signer, verifier = spec.signer(secret), spec.verifier(secret)
            sig_size = spec.sig_size
        elif family is Family.RSA_PKCS1 or family is Family.RSA_PSS:
            if not isinstance(public, rsa.RSAPublicKey):
                raise UnusableKey(f"{spec.name} needs an RSA key")
            _check_rsa_modulus(public.public_numbers().n)
            if isinstance(private, rsa.RSAPrivateKey):
                signer = spec.signer(private)
            verifier = spec.verifier(public)
            sig_size = (public.key_size + 7) // 8
        elif family is Family.ML_DSA:
            private_class, public_class = _mldsa_classes(spec)
            if not isinstance(public, public_class):
                raise UnusableKey(f"{spec.name} needs an {spec.name} key")  # R5: one parameter set per alg
            if isinstance(private, private_class):
                _check_seed(private)
                signer = spec.signer(private)
            verifier = spec.verifier(public)
            sig_size = spec.sig_size
        elif family is Family.ECDSA:
            if not isinstance(public, ec.EllipticCurvePublicKey) or spec.crv is None:
                raise UnusableKey(f"{spec.name} needs an EC key")
            if not isinstance(public.curve, CURVES[spec.crv]):
                raise UnusableKey(f"{spec.name} needs a {spec.crv} key")  # RFC 7518 §3.4
            if isinstance(private, ec.EllipticCurvePrivateKey):
                signer = spec.signer(private)
            verifier = spec.verifier(public)
            sig_size = spec.sig_size
        else:
            if not isinstance(public, ed25519.Ed25519PublicKey):
                raise UnusableKey(f"{spec.name} needs an Ed25519 key")  # RFC 8037, RFC 9864
            if isinstance(private, ed25519.Ed25519PrivateKey):
                signer = spec.signer(private)
            verifier = spec.verifier(public)
            sig_size = spec.sig_size
        self._signer = signer if may_sign else None
        self._verifier = verifier if may_verify else None
        self._sig_size = sig_size
        self._headers_by_typ = {}
        self._header = self.encoded_header("JWT")
        return self

    @classmethod
    def from_secret(cls, secret: bytes, alg: str = "HS256", kid: str | None = None) -> Key:
        """An HMAC key (``HS256``/``HS384``/``HS512``) from raw secret bytes.

        Raises:
            UnusableKey: ``key``, when the secret is shorter than the hash output (RFC 7518 §3.2)
                or ``alg`` is not an HMAC algorithm.
            DisallowedAlgorithm: ``algorithm``, when ``alg`` is unknown.

        Example:
            >>> Key.from_secret(b"s" * 64, alg="HS512").alg
            'HS512'
        """
        if not isinstance(secret, bytes | bytearray):
            raise TypeError("secret must be bytes")
        spec = lookup(alg)
        if spec.family is not Family.HMAC:
            raise UnusableKey("from_secret builds HMAC keys only")
        secret = bytes(secret)
        if len(secret) < spec.hash_size:
            # RFC 7518 §3.2: a key of the same size as the hash output or larger MUST be used (R6).
            raise UnusableKey(f"{spec.name} secrets must be at least {spec.hash_size} bytes")
        return cls._build(spec, _check_kid(kid), secret=secret)

    @classmethod
    def from_pem(cls, data: bytes, alg: str, kid: str | None = None, password: bytes | None = None) -> Key:
        """An RSA, EC, Ed25519 or ML-DSA key from PEM: a private key, a public key or an X.509 certificate.

        The PEM label decides how the data is read; HMAC secrets never come from PEM (CVE-2022-29217). An
        ML-DSA private key is PKCS#8 in RFC 9881's seed form, the 32 bytes that RFC 9964 makes its JWK
        ``priv`` (``cryptography`` reads no other form, and an expanded key could never be written as a JWK).

        Raises:
            UnusableKey: ``key``, when the PEM cannot be read or the key does not fit ``alg``.
            DisallowedAlgorithm: ``algorithm``, when ``alg`` is unknown.
        """
        if not isinstance(data, bytes | bytearray):
            raise TypeError("PEM data must be bytes")
        spec = lookup(alg)
        if spec.family is Family.HMAC:
            raise UnusableKey("HMAC keys come from Key.from_secret, never from PEM")
        kid = _check_kid(kid)
        match = _PEM_LABEL.search(data)
        label = match.group(1) if match else b""
        private: Any = None
        public: Any
        try:
            if label in _PRIVATE_LABELS:
                private = serialization.load_pem_private_key(bytes(data), password)
                public = private.public_key()
            elif label in _PUBLIC_LABELS:
                public = serialization.load_pem_public_key(bytes(data))
            elif label == b"CERTIFICATE":
                public = x509.load_pem_x509_certificate(bytes(data)).public_key()
            else:
                raise UnusableKey("not a PEM private key, public key or certificate")
        except UnusableKey:
            raise
        except Exception:  # ValueError, TypeError, UnsupportedAlgorithm: never echo the key material.
            raise UnusableKey("cannot load the PEM key") from None
        return cls._build(spec, kid, private=private, public=public)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any], alg: str | None = None) -> Key:
        """A key from a JWK (RFC 7517), public or private, bound to its ``alg`` member or argument.

        The JWK is validated fully (R6): canonical base64url members of the right length, the EC point on its
        curve, the OKP private ``d`` matching ``x``, the AKP (ML-DSA, RFC 9964) ``pub`` of its parameter set's
        exact length and the 32-byte seed ``priv`` giving that ``pub``, RSA ``e`` odd and at least 3 and the
        CRT parameters consistent. An AKP JWK must carry its ``alg`` member (RFC 9964). ``use`` other than
        ``"sig"`` or ``key_ops`` without ``"verify"`` makes the key unusable for verification (R5).

        Raises:
            UnusableKey: ``key``, for any invalid JWK, a missing algorithm, or one that contradicts ``alg``.
            DisallowedAlgorithm: ``algorithm``, when the algorithm is unknown.

        Example:
            >>> secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"
            >>> Key.from_jwk({"kty": "oct", "k": secret, "alg": "HS256"})
            Key(alg='HS256', kid=None, private=True)
        """
        if not isinstance(jwk, Mapping):
            raise TypeError("a JWK must be a mapping")
        member_alg = jwk.get("alg")
        if member_alg is not None and alg is not None and member_alg != alg:
            raise UnusableKey("the JWK's alg contradicts the requested algorithm")
        chosen = member_alg if member_alg is not None else alg
        if chosen is None:
            raise UnusableKey("a key must be bound to one algorithm: give the JWK an alg or pass alg=")
        spec = lookup(chosen)
        kid = jwk.get("kid")
        if kid is not None and type(kid) is not str:
            raise UnusableKey("JWK kid must be a string")
        use = jwk.get("use")
        if use is not None and type(use) is not str:
            raise UnusableKey("JWK use must be a string")
        raw_ops = jwk.get("key_ops")
        key_ops: frozenset[str] | None = None
        if raw_ops is not None:
            if not isinstance(raw_ops, list) or not all(type(op) is str for op in raw_ops):
                raise UnusableKey("JWK key_ops must be a list of strings")
            key_ops = frozenset(raw_ops)
            if len(key_ops) != len(raw_ops):
                raise UnusableKey("JWK key_ops has duplicates")  # RFC 7517 §4.3
        kty = jwk.get("kty")
        if kty != spec.kty:
            raise UnusableKey(f"{spec.name} needs a JWK of kty {spec.kty}")
        try:
            if spec.family is Family.HMAC:
                secret = _member(jwk, "k")
                if len(secret) < spec.hash_size:
                    raise UnusableKey(f"{spec.name} secrets must be at least {spec.hash_size} bytes")
                return cls._build(spec, kid, secret=secret, use=use, key_ops=key_ops)
            private: _PrivateKey | None
            public: _PublicKey
            if spec.family is Family.ECDSA:
                private, public = _ec_from_jwk(jwk, spec)
            elif spec.family is Family.EDDSA:
                private, public = _okp_from_jwk(jwk, spec)
            elif spec.family is Family.ML_DSA:
                private, public = _akp_from_jwk(jwk, spec)
            else:
                private, public = _rsa_from_jwk(jwk)
        except UnusableKey:
            raise
        except Exception:  # ValueError, TypeError, OverflowError from cryptography: never echo key material.
            raise UnusableKey("invalid JWK") from None
        return cls._build(spec, kid, private=private, public=public, use=use, key_ops=key_ops)

    @classmethod
    def generate(cls, alg: str, kid: str | None = None) -> Key:
        """A new random key: an HMAC secret of the hash size, RSA 2048, the alg's curve, Ed25519, or an ML-DSA
        key of the alg's parameter set (from a fresh 32-byte seed).

        Example:
            >>> Key.generate("ES256", kid="k2").is_private
            True
        """
        spec = lookup(alg)
        kid = _check_kid(kid)
        if spec.family is Family.HMAC:
            return cls._build(spec, kid, secret=secrets.token_bytes(spec.hash_size))
        private: _PrivateKey
        if spec.family is Family.ECDSA and spec.crv is not None:
            private = ec.generate_private_key(CURVES[spec.crv]())
        elif spec.family is Family.EDDSA:
            private = ed25519.Ed25519PrivateKey.generate()
        elif spec.family is Family.ML_DSA:
            try:
                private = _mldsa_classes(spec)[0].from_seed_bytes(secrets.token_bytes(MLDSA_SEED_SIZE))
            except UnsupportedAlgorithm:
                raise UnusableKey(f"this cryptography build has no {spec.name}") from None
        else:
            private = rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
        return cls._build(spec, kid, private=private, public=private.public_key())

    # --- properties ---------------------------------------------------------------------------------------

    @property
    def alg(self) -> str:
        """The one JWS algorithm this key signs and verifies."""
        return self._alg

    @property
    def kid(self) -> str | None:
        """The key id, or None."""
        return self._kid

    @property
    def is_private(self) -> bool:
        """True for HMAC secrets and asymmetric private keys; False for public keys."""
        return self._secret is not None or self._private is not None

    @property
    def is_symmetric(self) -> bool:
        """True for HMAC keys (kty ``oct``), which have no public form."""
        return self._secret is not None

    @property
    def can_sign(self) -> bool:
        """Whether this key may sign (it is private, and ``use``/``key_ops`` allow it)."""
        return self._signer is not None

    @property
    def can_verify(self) -> bool:
        """Whether this key may verify (``use``/``key_ops`` allow it)."""
        return self._verifier is not None

    # --- conversions --------------------------------------------------------------------------------------

    def public(self) -> Key:
        """The public half of an asymmetric key, bound to the same algorithm and ``kid``.

        Raises:
            UnusableKey: ``key``, for HMAC keys, which have no public form.
        """
        if self._secret is not None:
            raise UnusableKey("an HMAC key has no public form")
        if self._private is None:
            return self
        return Key._build(
            self._spec, self._kid, public=self._public, use=self._use, key_ops=_ops_for(self._key_ops, False)
        )

    def to_jwk(self, private: bool = False) -> dict[str, Any]:
        """This key as a JWK dict (RFC 7517) with ``alg`` and ``kid``; private members only when asked.

        A private JWK never lists ``"verify"`` in ``key_ops`` (WebCrypto refuses such keys).

        Raises:
            UnusableKey: ``key``, for ``private=True`` on a public key, or ``private=False`` on an HMAC key.
        """
        if private and not self.is_private:
            raise UnusableKey("a public key has no private members")
        if self._secret is not None and not private:
            raise UnusableKey("an HMAC key has no public form; use to_jwk(private=True)")
        jwk = self._members(private)
        jwk["alg"] = self._alg
        if self._kid is not None:
            jwk["kid"] = self._kid
        if self._use is not None:
            jwk["use"] = self._use
        ops = _ops_for(self._key_ops, private)
        if ops is not None:
            jwk["key_ops"] = sorted(ops)
        return jwk

    def thumbprint(self) -> str:
        """The RFC 7638 JWK thumbprint: base64url SHA-256 of the required public members, sorted, compact."""
        required = self._members(self._secret is not None)
        digest = hashlib.sha256(dumps(dict(sorted(required.items())))).digest()
        return _b64(digest)

    def _members(self, private: bool) -> dict[str, Any]:
        spec = self._spec
        jwk: dict[str, Any]
        if self._secret is not None:
            return {"kty": "oct", "k": _b64(self._secret)}
        public = self._public
        if spec.family is Family.ML_DSA:
            # RFC 9964: alg is a required member of an AKP key and of its RFC 7638 thumbprint (alg, kty, pub).
            raw_public = cast("_MLDSAPublic", public).public_bytes_raw()
            jwk = {"kty": "AKP", "alg": spec.name, "pub": _b64(raw_public)}
            if private and self._private is not None:
                jwk["priv"] = _b64(cast("_MLDSAPrivate", self._private).private_bytes_raw())
            return jwk
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            jwk = {"kty": "RSA", "n": _b64(_uint_bytes(numbers.n))}
            jwk["e"] = _b64(_uint_bytes(numbers.e))
            if private and isinstance(self._private, rsa.RSAPrivateKey):
                p = self._private.private_numbers()
                for name, value in zip(_RSA_PRIVATE, (p.d, p.p, p.q, p.dmp1, p.dmq1, p.iqmp), strict=True):
                    jwk[name] = _b64(_uint_bytes(value))
            return jwk
        if isinstance(public, ec.EllipticCurvePublicKey):
            size = spec.sig_size // 2
            point = public.public_numbers()
            jwk = {
                "kty": "EC",
                "crv": spec.crv,
                "x": _b64(_uint_bytes(point.x, size)),
                "y": _b64(_uint_bytes(point.y, size)),
            }
            if private and isinstance(self._private, ec.EllipticCurvePrivateKey):
                jwk["d"] = _b64(_uint_bytes(self._private.private_numbers().private_value, size))
            return jwk
        if not isinstance(public, ed25519.Ed25519PublicKey):  # pragma: no cover - _build guarantees it
            raise UnusableKey("unknown key type")
        raw = serialization.Encoding.Raw
        x = public.public_bytes(raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64(x)}
        if private and isinstance(self._private, ed25519.Ed25519PrivateKey):
            fmt, none = serialization.PrivateFormat.Raw, serialization.NoEncryption()
            jwk["d"] = _b64(self._private.private_bytes(raw, fmt, none))
        return jwk

    def encoded_header(self, typ: str | None) -> bytes:
        """The base64url JOSE header this key puts on tokens with the given ``typ`` (cached per ``typ``)."""
        cache = self._headers_by_typ
        header = cache.get(typ)
        if header is None:
            fields: dict[str, str] = {"alg": self._alg}
            if self._kid is not None:
                fields["kid"] = self._kid
            if typ is not None:
                fields["typ"] = typ
            header = _B64(dumps(fields))
            if len(cache) < 16:
                cache[typ] = header
        return header

    # --- value semantics ----------------------------------------------------------------------------------

    def _ident(self) -> tuple[Any, ...]:
        ident = self._identity
        if ident is None:
            ops = None if self._key_ops is None else tuple(sorted(self._key_ops))
            ident = (self._alg, self._kid, self.is_private, self._use, ops, self.thumbprint())
            self._identity = ident
        return ident

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Key):
            return NotImplemented
        # The thumbprint covers the secret of HMAC keys; compare in constant time all the same.
        mine, theirs = self._ident(), other._ident()
        return mine[:-1] == theirs[:-1] and hmac.compare_digest(mine[-1], theirs[-1])

    def __hash__(self) -> int:
        return hash(self._ident())

    def __repr__(self) -> str:
        return f"Key(alg={self._alg!r}, kid={self._kid!r}, private={self.is_private})"

    def __copy__(self) -> Key:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> Key:
        return self  # immutable

    def __reduce__(self) -> Any:
        raise TypeError("Key objects are not picklable; serialise them with to_jwk()")


# ROCA (CVE-2017-15361): Infineon's generator made moduli whose residue modulo each of these small primes lies
# in the subgroup generated by 65537. A random modulus passes all 38 tests with negligible probability
# (Nemec et al., "The Return of Coppersmith's Attack", 2017).
_ROCA_PRIMES = (
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101,
    103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
)  # fmt: skip


def _subgroup(prime: int) -> frozenset[int]:
    residues, value = set(), 1
    while value not in residues:
        residues.add(value)
        value = value * 65537 % prime
    return frozenset(residues)


_ROCA_SUBGROUPS = tuple((prime, _subgroup(prime)) for prime in _ROCA_PRIMES)


def _roca_vulnerable(n: int) -> bool:
    return all(n % prime in residues for prime, residues in _ROCA_SUBGROUPS)


def _check_rsa_modulus(n: int) -> None:
    if n.bit_length() < MIN_RSA_BITS:
        raise UnusableKey(f"RSA keys must have at least {MIN_RSA_BITS} bits")  # RFC 7518 §3.3
    if n.bit_length() > MAX_RSA_BITS:
        # OpenSSL's own ceiling; a larger modulus only makes every verification slower (a JWKS is input).
        raise UnusableKey(f"RSA keys must have at most {MAX_RSA_BITS} bits")
    if _roca_vulnerable(n):
        raise UnusableKey("RSA modulus has the ROCA fingerprint (CVE-2017-15361)")


def _ops_for(ops: frozenset[str] | None, private: bool) -> frozenset[str] | None:
    # A private JWK never lists "verify" (WebCrypto refuses it); a public one never lists "sign".
    if ops is None:
        return None
    return ops - ({"verify"} if private else {"sign"})


def _member(jwk: Mapping[str, Any], name: str, size: int = 0) -> bytes:
    value = jwk.get(name)
    if type(value) is not str:
        raise UnusableKey(f"JWK member {name} must be a base64url string")
    try:
        raw = base64url.decode(value)
    except ValueError:
        raise UnusableKey(f"JWK member {name} is not canonical base64url") from None
    if size and len(raw) != size:
        raise UnusableKey(f"JWK member {name} must be {size} bytes")
    return raw


def _uint(jwk: Mapping[str, Any], name: str) -> int:
    raw = _member(jwk, name)
    if not raw or raw[0] == 0:
        # RFC 7518 §6.3.1: unsigned big-endian integers in their minimal octet form.
        raise UnusableKey(f"JWK member {name} is not a minimal unsigned integer")
    return int.from_bytes(raw, "big")


def _rsa_from_jwk(jwk: Mapping[str, Any]) -> tuple[rsa.RSAPrivateKey | None, rsa.RSAPublicKey]:
    if "oth" in jwk:
        raise UnusableKey("multi-prime RSA keys are not supported")
    n, e = _uint(jwk, "n"), _uint(jwk, "e")
    _check_rsa_modulus(n)
    if e < 3 or e % 2 == 0 or e >= n:
        raise UnusableKey("RSA public exponent must be odd and at least 3")
    public_numbers = rsa.RSAPublicNumbers(e, n)
    if "d" not in jwk:
        if any(name in jwk for name in _RSA_PRIVATE):
            raise UnusableKey("RSA private members without d")
        return None, public_numbers.public_key()
    d = _uint(jwk, "d")
    crt = [name for name in _RSA_PRIVATE[1:] if name in jwk]
    if crt:
        if len(crt) != 5:
            raise UnusableKey("RSA private JWK must carry all of p, q, dp, dq, qi or none")
        p, q, dp, dq, qi = (_uint(jwk, name) for name in _RSA_PRIVATE[1:])
    else:
        # RFC 7518 §6.3.2: the CRT members are optional; recover them from n, e, d.
        p, q = rsa.rsa_recover_prime_factors(n, e, d)
        dp, dq, qi = rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q)
    # cryptography checks the whole key (p*q = n, the CRT values) when loading it.
    private = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, public_numbers).private_key()
    return private, private.public_key()


def _ec_from_jwk(
    jwk: Mapping[str, Any], spec: Algorithm
) -> tuple[ec.EllipticCurvePrivateKey | None, ec.EllipticCurvePublicKey]:
    if jwk.get("crv") != spec.crv or spec.crv is None:
        raise UnusableKey(f"{spec.name} needs a JWK of crv {spec.crv}")
    size = spec.sig_size // 2
    curve = CURVES[spec.crv]()
    x = int.from_bytes(_member(jwk, "x", size), "big")
    y = int.from_bytes(_member(jwk, "y", size), "big")
    try:
        # Refuses points not on the curve (invalid-curve attacks).
        public = ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    except ValueError:
        raise UnusableKey("JWK point is not on the curve") from None
    if "d" not in jwk:
        return None, public
    d = int.from_bytes(_member(jwk, "d", size), "big")
    private = ec.derive_private_key(d, curve)
    if private.public_key().public_numbers() != public.public_numbers():
        raise UnusableKey("JWK private key does not match its public point")
    return private, public


def _okp_from_jwk(
    jwk: Mapping[str, Any], spec: Algorithm
) -> tuple[ed25519.Ed25519PrivateKey | None, ed25519.Ed25519PublicKey]:
    if jwk.get("crv") != "Ed25519":
        raise UnusableKey(f"{spec.name} needs a JWK of crv Ed25519")
    x = _member(jwk, "x", 32)
    public = ed25519.Ed25519PublicKey.from_public_bytes(x)
    if "d" not in jwk:
        return None, public
    private = ed25519.Ed25519PrivateKey.from_private_bytes(_member(jwk, "d", 32))
    derived = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if not hmac.compare_digest(derived, x):
        raise UnusableKey("JWK private key d does not match x")
    return private, public


_MLDSA_CLASSES: dict[str, tuple[Any, Any]] = {}


def _mldsa_classes(spec: Algorithm) -> tuple[Any, Any]:
    """``cryptography``'s private and public key classes for an ML-DSA parameter set, imported on first use so
    that the other algorithms keep working with a ``cryptography`` that predates ML-DSA."""
    classes = _MLDSA_CLASSES.get(spec.name)
    if classes is None:
        stem = spec.name.replace("-", "")  # "ML-DSA-65" -> "MLDSA65"
        try:
            from cryptography.hazmat.primitives.asymmetric import mldsa

            classes = (getattr(mldsa, f"{stem}PrivateKey"), getattr(mldsa, f"{stem}PublicKey"))
        except (ImportError, AttributeError):
            raise UnusableKey(f"{spec.name} needs a cryptography release with ML-DSA") from None
        _MLDSA_CLASSES[spec.name] = classes
    return classes


def _check_seed(private: _MLDSAPrivate) -> None:
    try:
        seed = private.private_bytes_raw()
    except Exception:  # an expanded private key without its seed
        raise UnusableKey("an ML-DSA private key must carry its 32-byte seed (RFC 9964)") from None
    if len(seed) != MLDSA_SEED_SIZE:  # pragma: no cover - cryptography only ever gives the seed
        raise UnusableKey("an ML-DSA private key must carry its 32-byte seed (RFC 9964)")


def _akp_from_jwk(jwk: Mapping[str, Any], spec: Algorithm) -> tuple[_MLDSAPrivate | None, _MLDSAPublic]:
    # RFC 9964: "alg" is REQUIRED in an AKP key; from_jwk has refused one that contradicts the binding.
    if jwk.get("alg") != spec.name:
        raise UnusableKey("an AKP JWK must carry its alg member (RFC 9964)")
    private_class, public_class = _mldsa_classes(spec)
    pub = _member(jwk, "pub", spec.pub_size)  # FIPS 204 Table 2: one exact length per parameter set
    public: _MLDSAPublic = public_class.from_public_bytes(pub)
    if "priv" not in jwk:
        return None, public
    private: _MLDSAPrivate = private_class.from_seed_bytes(_member(jwk, "priv", MLDSA_SEED_SIZE))
    # RFC 9964 "Mismatched AKP parameters": the seed must give exactly this pub.
    if not hmac.compare_digest(private.public_key().public_bytes_raw(), pub):
        raise UnusableKey("JWK private key priv does not match pub")
    return private, public


class KeySet:
    """Verification keys selected by the token's ``kid`` and ``alg`` (R9).

    A token with a ``kid`` uses the key with that exact ``kid`` bound to the header's ``alg`` (the same JWK
    may appear under one ``kid`` bound to several algorithms); an unknown ``kid`` is refused. A token without
    a ``kid`` is tried against the keys bound to its ``alg``, at most :data:`MAX_KEYS_WITHOUT_KID` of them,
    in the order given.

    Example:
        >>> from jwtkit import Key, KeySet
        >>> keys = KeySet([Key.generate("ES256", kid="a"), Key.generate("EdDSA", kid="b")])
        >>> len(keys)
        2
    """

    __slots__ = ("_by_alg", "_by_kid", "_keys")

    def __init__(self, keys: Iterable[Key]) -> None:
        self._keys: tuple[Key, ...] = tuple(keys)
        by_kid: dict[str, dict[str, Key]] = {}
        by_alg: dict[str, list[Key]] = {}
        for key in self._keys:
            if not isinstance(key, Key):
                raise TypeError("KeySet takes jwtkit.Key objects")
            if key.kid is not None:
                bound = by_kid.setdefault(key.kid, {})
                if key.alg in bound:
                    raise UnusableKey("two keys share one kid and one alg")
                bound[key.alg] = key
            if key._verifier is not None:
                by_alg.setdefault(key.alg, []).append(key)
        self._by_kid = by_kid
        self._by_alg = {alg: tuple(found[:MAX_KEYS_WITHOUT_KID]) for alg, found in by_alg.items()}

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any], *, alg: str | None = None) -> KeySet:
        """A key set from a JWK Set (RFC 7517 §5). Keys whose ``use`` is not ``"sig"`` are skipped.

        Each key is bound to its ``alg`` member; ``alg`` binds the entries that have none (some providers
        publish keys without it), and an entry whose key type does not fit it is refused.

        A set that mixes symmetric (``oct``) keys with public asymmetric keys is refused: such a set is meant
        to be published, and a published secret signs for anyone.

        Raises:
            UnusableKey: ``key``, for a malformed set or any invalid signature key in it.
        """
        if not isinstance(jwks, Mapping):
            raise TypeError("a JWKS must be a mapping")
        entries = jwks.get("keys")
        if not isinstance(entries, list):
            raise UnusableKey("a JWKS needs a keys list")
        keys = []
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise UnusableKey("JWKS entries must be objects")
            if entry.get("use", "sig") != "sig":
                continue
            try:
                keys.append(Key.from_jwk(entry, alg=None if "alg" in entry else alg))
            except DisallowedAlgorithm:
                # A JWKS entry with an unknown algorithm is a bad key for the caller, not a bad token.
                raise UnusableKey("a JWKS entry has an unsupported algorithm") from None
        if any(key.is_symmetric for key in keys) and any(not key.is_private for key in keys):
            # A set that carries public keys is meant to be published, so a secret in it is no secret: anyone
            # holding the set could sign for that key (Wycheproof "MixedKeySet").
            raise UnusableKey("a JWKS with public keys must not carry symmetric (oct) keys")
        return cls(keys)

    def to_jwks(self, private: bool = False) -> dict[str, Any]:
        """The set as a JWKS dict; without ``private``, HMAC keys are left out and the rest are public."""
        if private:
            return {"keys": [key.to_jwk(private=key.is_private) for key in self._keys]}
        return {"keys": [key.to_jwk() for key in self._keys if not key.is_symmetric]}

    @property
    def keys(self) -> tuple[Key, ...]:
        """The keys, in the order given."""
        return self._keys

    def select(self, kid: str | None, alg: str) -> tuple[Key, ...]:
        """The keys to try for a token with this ``kid`` and ``alg`` (R9).

        Raises:
            UnusableKey: ``key``, when ``kid`` is unknown or its key may not verify.
            DisallowedAlgorithm: ``algorithm``, when no key is bound to ``alg``.
        """
        if kid is not None:
            bound = self._by_kid.get(kid)
            if bound is None:
                raise UnusableKey("no key with the token's kid")
            key = bound.get(alg)
            if key is None:
                raise DisallowedAlgorithm("the token's algorithm is not the key's algorithm")
            if key._verifier is None:
                raise UnusableKey("the key may not verify (use/key_ops)")
            return (key,)
        found = self._by_alg.get(alg)
        if not found:
            raise DisallowedAlgorithm("no key is bound to the token's algorithm")
        return found

    def __iter__(self) -> Iterator[Key]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeySet({list(self._keys)!r})"
