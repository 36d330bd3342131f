"""The algorithm layer (jwtkit.jwa): the table, sign/verify, exact lengths and PSS/ECDSA interop details."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import jwtkit.jwa
from jwtkit import DisallowedAlgorithm, Key, UnusableKey, jwa
from jwtkit._jose import base64url
from jwtkit._jose.algorithms import ALGORITHMS, Family, lookup

DATA = b"header.payload"
SIZES = {
    "HS256": 32,
    "HS384": 48,
    "HS512": 64,
    "ES256": 64,
    "ES384": 96,
    "ES512": 132,
    "EdDSA": 64,
    "Ed25519": 64,
    "ML-DSA-44": 2420,  # FIPS 204 Table 2, RFC 9964
    "ML-DSA-65": 3309,
    "ML-DSA-87": 4627,
}


def test_the_table_is_exactly_the_supported_algorithms() -> None:
    assert set(ALGORITHMS) == {
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512", "EdDSA", "Ed25519", "ML-DSA-44", "ML-DSA-65", "ML-DSA-87",
    }  # fmt: skip
    assert jwtkit.jwa.ALGORITHMS is ALGORITHMS
    with pytest.raises(TypeError):
        ALGORITHMS["none"] = ALGORITHMS["HS256"]  # type: ignore[index]


@pytest.mark.parametrize(
    "name",
    ["none", "None", "NONE", "", "hs256", "RS1", "ES256K", "EdDSA ", "A128KW", None, 1, "ML-DSA", "ml-dsa-65",
     "MLDSA65", "ML-DSA-65 ", "HashML-DSA-65", "ML-DSA-128"],
)
def test_lookup_refuses(name: object) -> None:
    with pytest.raises(DisallowedAlgorithm):
        lookup(name)


@pytest.mark.parametrize("alg", sorted(SIZES))
def test_sign_verify_with_exact_lengths(alg: str) -> None:
    key = Key.generate(alg)
    signature = jwa.sign(alg, key, DATA)
    assert len(signature) == SIZES[alg]
    assert jwa.verify(alg, key, DATA, signature) is True
    assert jwa.verify(alg, key, DATA + b"x", signature) is False
    assert jwa.verify(alg, key, DATA, signature + b"\0") is False
    assert jwa.verify(alg, key, DATA, signature[:-1]) is False
    assert jwa.verify(alg, key, DATA, b"") is False
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert jwa.verify(alg, key, DATA, flipped) is False


@pytest.mark.parametrize("alg", ["RS256", "PS384", "PS512"])
def test_rsa_signature_is_modulus_length(alg: str) -> None:
    key = Key.generate(alg)
    signature = jwa.sign(alg, key, DATA)
    assert len(signature) == 256
    assert jwa.verify(alg, key.public(), DATA, signature)
    assert not jwa.verify(alg, key.public(), DATA, b"\0" + signature)
    assert not jwa.verify(alg, key.public(), DATA, signature[1:])


@pytest.mark.parametrize(
    ("alg", "hash_cls", "size"),
    [("PS256", hashes.SHA256, 32), ("PS384", hashes.SHA384, 48), ("PS512", hashes.SHA512, 64)],
)
def test_pss_salt_is_the_hash_length(alg: str, hash_cls: type[hashes.HashAlgorithm], size: int) -> None:
    # RFC 7518 §3.5 and the interop note: other implementations refuse other salt lengths.
    key = Key.generate(alg)
    signature = jwa.sign(alg, key, DATA)
    public = key._public
    assert public is not None
    public.verify(signature, DATA, padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=size), hash_cls())  # type: ignore[call-arg, union-attr]


def test_ecdsa_refuses_out_of_range_scalars() -> None:
    key = Key.generate("ES256")
    n = ALGORITHMS["ES256"].curve_order
    for r, s in ((0, 0), (0, 1), (1, 0), (n, 1), (1, n), (n - 1 + n, 1)):
        raw = r.to_bytes(33, "big")[-32:] + s.to_bytes(33, "big")[-32:]
        assert jwa.verify("ES256", key, DATA, raw) is False


def test_ecdsa_accepts_the_raw_form_of_a_der_signature() -> None:
    private = ec.generate_private_key(ec.SECP384R1())
    key = Key.from_jwk(
        {
            "kty": "EC",
            "crv": "P-384",
            "x": base64url.encode(
                private.public_key().public_numbers().x.to_bytes(48, "big")
            ).decode(),
            "y": base64url.encode(
                private.public_key().public_numbers().y.to_bytes(48, "big")
            ).decode(),
        },
        alg="ES384",
    )
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(private.sign(DATA, ec.ECDSA(hashes.SHA384())))
    assert jwa.verify("ES384", key, DATA, r.to_bytes(48, "big") + s.to_bytes(48, "big"))
    assert not jwa.verify("ES384", key, DATA, encode_dss_signature(r, s))


def test_eddsa_and_ed25519_are_separate_bindings() -> None:
    key = Key.generate("EdDSA")
    same = Key.from_jwk({**key.to_jwk(private=True), "alg": "Ed25519"})
    signature = jwa.sign("EdDSA", key, DATA)
    assert jwa.verify("Ed25519", same, DATA, signature)
    with pytest.raises(DisallowedAlgorithm):
        jwa.verify("Ed25519", key, DATA, signature)


def test_key_binding_is_enforced() -> None:
    key = Key.generate("HS256")
    with pytest.raises(DisallowedAlgorithm):
        jwa.sign("HS512", key, DATA)
    with pytest.raises(DisallowedAlgorithm):
        jwa.verify("RS256", key, DATA, b"x" * 32)
    with pytest.raises(DisallowedAlgorithm):
        jwa.sign("none", key, DATA)
    with pytest.raises(TypeError):
        jwa.sign("HS256", b"secret" * 8, DATA)  # type: ignore[arg-type]


def test_public_keys_cannot_sign() -> None:
    key = Key.generate("ES256").public()
    with pytest.raises(UnusableKey):
        jwa.sign("ES256", key, DATA)


def test_families() -> None:
    assert {spec.family for spec in ALGORITHMS.values()} == set(Family)
    assert all(spec.name == name for name, spec in ALGORITHMS.items())


@pytest.mark.parametrize("alg", ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87"])
def test_ml_dsa_is_hedged_and_any_valid_signature_verifies(alg: str) -> None:
    # FIPS 204's hedged signing: two signatures of one input differ, and both verify (R18: the token string is
    # not unique, so nothing may key on it).
    key = Key.generate(alg)
    first, second = jwa.sign(alg, key, DATA), jwa.sign(alg, key, DATA)
    assert first != second
    assert jwa.verify(alg, key.public(), DATA, first) and jwa.verify(alg, key.public(), DATA, second)


@pytest.mark.parametrize("alg", ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87"])
def test_ml_dsa_uses_the_empty_context(alg: str) -> None:
    # RFC 9964: ctx MUST be the empty string. A signature made with any other context never verifies.
    key = Key.generate(alg)
    private = key._private
    assert private is not None
    with_context = private.sign(DATA, b"jwtkit")  # type: ignore[call-arg]
    assert not jwa.verify(alg, key, DATA, with_context)
    assert jwa.verify(alg, key, DATA, private.sign(DATA, b""))  # type: ignore[call-arg]


def test_ml_dsa_parameter_sets_are_separate_bindings() -> None:
    # R5: one key, one parameter set. A 44 signature is the wrong length for 65 and 87 anyway, but the binding
    # refuses before any length is looked at.
    key = Key.generate("ML-DSA-44")
    signature = jwa.sign("ML-DSA-44", key, DATA)
    for other in ("ML-DSA-65", "ML-DSA-87", "EdDSA"):
        with pytest.raises(DisallowedAlgorithm):
            jwa.verify(other, key, DATA, signature)
        with pytest.raises(DisallowedAlgorithm):
            jwa.sign(other, key, DATA)
