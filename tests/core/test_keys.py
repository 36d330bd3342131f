"""Keys (R5, R6): construction refusals, JWK validation, round trips, thumbprints, value semantics, repr."""

from __future__ import annotations

import base64
import copy
import pickle
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, rsa

from jwtkit import DisallowedAlgorithm, JWTError, Key, KeySet, UnusableKey, decode, encode

from ._tokens import EXP, NOW, b64

A1 = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"
ALL_ALGS = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
ALL_ALGS += ["ES256", "ES384", "ES512", "EdDSA", "Ed25519"]
MLDSA = ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87"]
ALL_ALGS += MLDSA
# FIPS 204 Table 2 (RFC 9964): public key and signature lengths of each parameter set; the seed is 32 bytes.
PUB_SIZE = {"ML-DSA-44": 1312, "ML-DSA-65": 1952, "ML-DSA-87": 2592}
CLAIMS = {"exp": EXP}
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(private: Any, public: bool = False) -> bytes:
    if public:
        return private.public_key().public_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return private.private_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    made = {}
    for alg in ALL_ALGS:
        if alg.startswith(("RS", "PS")):
            made[alg] = Key.from_pem(_pem(_RSA), alg, kid=alg.lower())
        else:
            made[alg] = Key.generate(alg, kid=alg.lower())
    return made


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "==")


def code_of(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(JWTError) as caught:
        call(*args, **kwargs)
    return caught.value.code


# --- R6: refused at construction ----------------------------------------------------------------------------


@pytest.mark.parametrize(("alg", "size"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_hmac_secret_shorter_than_the_hash_is_refused(alg: str, size: int) -> None:
    assert code_of(Key.from_secret, b"k" * (size - 1), alg) == "key"
    assert code_of(Key.from_jwk, {"kty": "oct", "k": b64(b"k" * (size - 1)), "alg": alg}) == "key"
    assert Key.from_secret(b"k" * size, alg).alg == alg


def test_empty_secret_is_refused() -> None:
    assert code_of(Key.from_secret, b"") == "key"


def test_secret_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        Key.from_secret("0123456789abcdef0123456789abcdef")  # type: ignore[arg-type]


@pytest.mark.parametrize("bits", [1024, 2047])
def test_small_rsa_is_refused(bits: int) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    assert code_of(Key.from_pem, _pem(small), "RS256") == "key"
    numbers = small.public_key().public_numbers()
    jwk = {"kty": "RSA", "n": b64(numbers.n.to_bytes((bits + 7) // 8, "big")), "e": "AQAB", "alg": "RS256"}
    assert code_of(Key.from_jwk, jwk) == "key"


def test_rsa_even_or_tiny_exponent_is_refused(keys: dict[str, Key]) -> None:
    jwk = keys["RS256"].to_jwk()
    for e in (2, 1, 65536):
        assert code_of(Key.from_jwk, {**jwk, "e": b64(e.to_bytes(3, "big").lstrip(b"\0"))}) == "key"


def test_rsa_non_minimal_integers_are_refused(keys: dict[str, Key]) -> None:
    jwk = keys["RS256"].to_jwk()
    assert code_of(Key.from_jwk, {**jwk, "e": b64(b"\0\x01\x00\x01")}) == "key"


def test_rsa_inconsistent_private_members_are_refused(keys: dict[str, Key]) -> None:
    jwk = keys["RS256"].to_jwk(private=True)
    assert code_of(Key.from_jwk, {**jwk, "qi": jwk["dp"]}) == "key"
    partial = {name: value for name, value in jwk.items() if name != "dq"}
    assert code_of(Key.from_jwk, partial) == "key"
    assert code_of(Key.from_jwk, {**jwk, "oth": []}) == "key"


def test_rsa_private_jwk_without_crt_members_is_completed(keys: dict[str, Key]) -> None:
    jwk = keys["RS256"].to_jwk(private=True)
    bare = {name: jwk[name] for name in ("kty", "n", "e", "d", "alg", "kid")}
    key = Key.from_jwk(bare)
    assert key == keys["RS256"]
    assert decode(encode(CLAIMS, key), keys["RS256"].public(), now=NOW) == CLAIMS


def test_ec_point_not_on_curve_is_refused(keys: dict[str, Key]) -> None:
    jwk = keys["ES256"].to_jwk()
    y = bytearray(unb64(jwk["y"]))
    y[-1] ^= 1
    assert code_of(Key.from_jwk, {**jwk, "y": b64(bytes(y))}) == "key"


def test_ec_private_not_matching_public_is_refused(keys: dict[str, Key]) -> None:
    other = Key.generate("ES256").to_jwk(private=True)
    assert code_of(Key.from_jwk, {**keys["ES256"].to_jwk(), "d": other["d"]}) == "key"


def test_ec_coordinates_must_have_full_length(keys: dict[str, Key]) -> None:
    jwk = keys["ES256"].to_jwk()
    raw = unb64(jwk["x"])
    assert code_of(Key.from_jwk, {**jwk, "x": b64(b"\0" + raw)}) == "key"
    assert code_of(Key.from_jwk, {**jwk, "x": b64(raw[1:])}) == "key"


@pytest.mark.parametrize(
    ("alg", "crv"), [("ES256", "P-384"), ("ES384", "P-256"), ("ES512", "P-256"), ("ES256", "secp256k1")]
)
def test_ec_curve_must_fit_the_alg(keys: dict[str, Key], alg: str, crv: str) -> None:
    jwk = {**keys["ES256"].to_jwk(), "crv": crv}
    jwk.pop("alg")
    assert code_of(Key.from_jwk, jwk, alg=alg) == "key"


def test_ec_pem_of_another_curve_is_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    assert code_of(Key.from_pem, _pem(p384), "ES256") == "key"
    assert Key.from_pem(_pem(p384), "ES384").alg == "ES384"


def test_okp_d_not_matching_x_is_refused(keys: dict[str, Key]) -> None:
    other = Key.generate("EdDSA").to_jwk(private=True)
    assert code_of(Key.from_jwk, {**keys["EdDSA"].to_jwk(), "d": other["d"]}) == "key"


def test_okp_other_curves_are_refused(keys: dict[str, Key]) -> None:
    for crv in ("Ed448", "X25519"):
        assert code_of(Key.from_jwk, {**keys["EdDSA"].to_jwk(), "crv": crv}) == "key"
    ed448_pem = _pem(ed448.Ed448PrivateKey.generate())
    assert code_of(Key.from_pem, ed448_pem, "EdDSA") == "key"


@pytest.mark.parametrize(
    "jwk",
    [
        {
            "kty": "oct",
            "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow==",
        },
        {
            "kty": "oct",
            "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ+EstJQLr/T+1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
        },
        {"kty": "oct", "k": 12},
        {"kty": "oct"},
        {
            "kty": "RSA",
            "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
        },
        {
            "kty": "oct",
            "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
            "kid": 7,
        },
        {
            "kty": "oct",
            "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
            "use": 1,
        },
        {
            "kty": "oct",
            "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
            "key_ops": "verify",
        },
        {
            "kty": "oct",
            "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
            "key_ops": ["verify", "verify"],
        },
    ],
    ids=[
        "padded",
        "std-alphabet",
        "k-number",
        "k-missing",
        "kty-mismatch",
        "kid-number",
        "use-number",
        "ops-string",
        "ops-duplicate",
    ],
)
def test_malformed_jwks_are_refused(jwk: dict[str, Any]) -> None:
    assert code_of(Key.from_jwk, jwk, alg="HS256") == "key"


def test_jwk_needs_an_algorithm() -> None:
    jwk = {"kty": "oct", "k": b64(b"k" * 32)}
    assert code_of(Key.from_jwk, jwk) == "key"
    assert code_of(Key.from_jwk, {**jwk, "alg": "HS256"}, alg="HS512") == "key"
    assert Key.from_jwk({**jwk, "alg": "HS256"}, alg="HS256").alg == "HS256"


@pytest.mark.parametrize("alg", ["none", "None", "RSA-OAEP", "A256GCM", "HS1", "", "ES256K"])
def test_unknown_algorithms_are_refused(alg: str) -> None:
    assert code_of(Key.from_secret, b"k" * 64, alg) == "algorithm"
    assert code_of(Key.generate, alg) == "algorithm"


def test_from_secret_builds_hmac_only() -> None:
    assert code_of(Key.from_secret, b"k" * 64, "RS256") == "key"


def test_from_pem_never_builds_hmac_keys() -> None:  # CVE-2022-29217
    assert code_of(Key.from_pem, _pem(_RSA, public=True), "HS256") == "key"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a pem",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN OPENSSH PRIVATE KEY-----\n",
    ],
)
def test_unreadable_pem_is_refused(data: bytes) -> None:
    assert code_of(Key.from_pem, data, "RS256") == "key"


def test_pem_wrong_key_type_is_refused() -> None:
    assert code_of(Key.from_pem, _pem(_RSA), "ES256") == "key"
    assert code_of(Key.from_pem, _pem(ec.generate_private_key(ec.SECP256R1())), "RS256") == "key"
    assert code_of(Key.from_pem, _pem(ed25519.Ed25519PrivateKey.generate()), "PS256") == "key"


def test_encrypted_pem_needs_its_password() -> None:
    encrypted = _RSA.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    assert code_of(Key.from_pem, encrypted, "RS256") == "key"
    assert code_of(Key.from_pem, encrypted, "RS256", password=b"wrong") == "key"
    assert Key.from_pem(encrypted, "RS256", password=b"pw").is_private


def test_certificate_pem_gives_a_public_key() -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jwtkit")])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    key = Key.from_pem(cert.public_bytes(serialization.Encoding.PEM), "ES256")
    assert not key.is_private
    signer = Key.from_pem(_pem(private), "ES256")
    assert decode(encode(CLAIMS, signer), key, now=NOW) == CLAIMS


def test_direct_construction_is_refused() -> None:
    with pytest.raises(TypeError):
        Key()


# --- R5: use and key_ops ---------------------------------------------------------------------------------


def test_use_enc_key_can_neither_sign_nor_verify(keys: dict[str, Key]) -> None:
    key = Key.from_jwk({**keys["ES256"].to_jwk(private=True), "use": "enc"})
    assert not key.can_sign and not key.can_verify
    assert code_of(encode, CLAIMS, key) == "key"
    assert code_of(decode, encode(CLAIMS, keys["ES256"]), key, now=NOW) == "key"


def test_key_ops_limit_the_operations(keys: dict[str, Key]) -> None:
    signer = Key.from_jwk({**keys["ES256"].to_jwk(private=True), "key_ops": ["sign"]})
    assert signer.can_sign and not signer.can_verify
    verifier = Key.from_jwk({**keys["ES256"].to_jwk(), "key_ops": ["verify"]})
    assert verifier.can_verify and not verifier.can_sign
    assert decode(encode(CLAIMS, signer), verifier, now=NOW) == CLAIMS


def test_private_jwk_never_lists_verify(keys: dict[str, Key]) -> None:
    key = Key.from_jwk({**keys["ES256"].to_jwk(private=True), "key_ops": ["sign", "verify"]})
    assert key.to_jwk(private=True)["key_ops"] == ["sign"]
    assert key.to_jwk()["key_ops"] == ["verify"]
    assert "key_ops" not in keys["ES256"].to_jwk(private=True)


def test_keyset_from_jwks_skips_encryption_keys(keys: dict[str, Key]) -> None:
    jwks = {
        "keys": [
            keys["ES256"].to_jwk(),
            {**keys["RS256"].to_jwk(), "use": "enc", "alg": "RSA-OAEP", "kid": "e"},
        ]
    }
    assert [key.kid for key in KeySet.from_jwks(jwks)] == ["es256"]


def test_keyset_from_jwks_refuses_bad_sets(keys: dict[str, Key]) -> None:
    assert code_of(KeySet.from_jwks, {"keys": "https://example.com/jwks"}) == "key"  # R20: never fetched
    assert code_of(KeySet.from_jwks, {}) == "key"
    assert code_of(KeySet.from_jwks, {"keys": [1]}) == "key"
    assert code_of(KeySet.from_jwks, {"keys": [{**keys["ES256"].to_jwk(), "alg": "ES521"}]}) == "key"
    mixed = {"keys": [keys["HS256"].to_jwk(private=True), keys["ES256"].to_jwk()]}
    assert code_of(KeySet.from_jwks, mixed) == "key"


def test_keyset_refuses_two_keys_with_one_kid_and_alg() -> None:
    assert code_of(KeySet, [Key.generate("HS256", kid="a"), Key.generate("HS256", kid="a")]) == "key"
    assert len(KeySet([Key.generate("HS256", kid="a"), Key.generate("HS512", kid="a")])) == 2


def test_keyset_takes_keys_only() -> None:
    with pytest.raises(TypeError):
        KeySet(["secret"])  # type: ignore[list-item]


# --- round trips ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_sign_and_verify_every_algorithm(keys: dict[str, Key], alg: str) -> None:
    key = keys[alg]
    token = encode(CLAIMS, key)
    assert decode(token, key, now=NOW) == CLAIMS
    verifier = key if key.is_symmetric else key.public()
    assert decode(token, verifier, now=NOW) == CLAIMS
    assert decode(token, KeySet([verifier]), now=NOW) == CLAIMS


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_jwk_round_trips(keys: dict[str, Key], alg: str) -> None:
    key = keys[alg]
    private_jwk = key.to_jwk(private=True)
    assert private_jwk["alg"] == alg and private_jwk["kid"] == alg.lower()
    assert Key.from_jwk(private_jwk) == key
    if not key.is_symmetric:
        public_jwk = key.to_jwk()
        assert "d" not in public_jwk and "p" not in public_jwk and "priv" not in public_jwk
        assert Key.from_jwk(public_jwk) == key.public()
        assert not key.public().is_private
        assert key.public().thumbprint() == key.thumbprint()


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_keyset_jwks_round_trip(keys: dict[str, Key], alg: str) -> None:
    key = keys[alg]
    assert list(KeySet.from_jwks(KeySet([key]).to_jwks(private=True))) == [key]
    public = KeySet([key]).to_jwks()
    assert public == {"keys": []} if key.is_symmetric else public == {"keys": [key.to_jwk()]}


def test_jwk_shapes(keys: dict[str, Key]) -> None:
    assert set(keys["HS256"].to_jwk(private=True)) == {"kty", "k", "alg", "kid"}
    assert keys["EdDSA"].to_jwk()["kty"] == "OKP" and keys["EdDSA"].to_jwk()["crv"] == "Ed25519"
    assert keys["Ed25519"].to_jwk()["alg"] == "Ed25519"
    assert keys["ES512"].to_jwk()["crv"] == "P-521"
    assert len(unb64(keys["ES512"].to_jwk()["x"])) == 66
    assert keys["RS256"].to_jwk()["e"] == "AQAB"


def test_public_forms_of_hmac_and_public_keys(keys: dict[str, Key]) -> None:
    assert code_of(keys["HS256"].public) == "key"
    assert code_of(keys["HS256"].to_jwk) == "key"
    public = keys["ES256"].public()
    assert public.public() is public
    assert code_of(public.to_jwk, private=True) == "key"
    assert code_of(encode, CLAIMS, public) == "key"


def test_properties(keys: dict[str, Key]) -> None:
    assert keys["HS256"].is_symmetric and keys["HS256"].is_private
    assert not keys["ES256"].is_symmetric and keys["ES256"].is_private
    assert not keys["ES256"].public().is_private
    assert keys["ES256"].kid == "es256" and keys["ES256"].alg == "ES256"
    assert Key.generate("HS256").kid is None


def test_thumbprint_is_base64url_sha256(keys: dict[str, Key]) -> None:
    for key in keys.values():
        assert len(key.thumbprint()) == 43


# --- value semantics and repr ----------------------------------------------------------------------------


def test_equality_and_hash_by_value(keys: dict[str, Key]) -> None:
    again = Key.from_jwk(keys["ES256"].to_jwk(private=True))
    assert again == keys["ES256"] and hash(again) == hash(keys["ES256"])
    assert keys["ES256"] != keys["ES256"].public()
    assert Key.from_secret(b"k" * 32, kid="a") != Key.from_secret(b"k" * 32, kid="b")
    assert Key.from_secret(b"k" * 32) != Key.from_secret(b"j" * 32)
    assert Key.from_secret(b"k" * 64, "HS256") != Key.from_secret(b"k" * 64, "HS512")
    assert len({Key.from_secret(b"k" * 32), Key.from_secret(b"k" * 32)}) == 1
    assert keys["ES256"] != "ES256"


def test_copy_returns_the_same_immutable_key(keys: dict[str, Key]) -> None:
    assert copy.copy(keys["ES256"]) is keys["ES256"]
    assert copy.deepcopy(keys["ES256"]) is keys["ES256"]
    with pytest.raises(TypeError):
        pickle.dumps(keys["HS256"])


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_repr_shows_no_key_material(keys: dict[str, Key], alg: str) -> None:
    key = keys[alg]
    text = repr(key) + repr(KeySet([key])) + str(key)
    assert text.startswith(f"Key(alg='{alg}', kid='{alg.lower()}', private=True)")
    for name, value in key.to_jwk(private=True).items():
        if name in ("k", "d", "p", "q", "dp", "dq", "qi", "n", "x", "y", "pub", "priv"):
            assert value[:12] not in text


def test_algorithm_error_is_not_key_error() -> None:
    assert not issubclass(DisallowedAlgorithm, UnusableKey)


def test_roca_fingerprinted_moduli_are_refused() -> None:  # CVE-2017-15361
    from math import prod

    from jwtkit._jose.keys import _ROCA_PRIMES, _roca_vulnerable

    # n = 1 (mod p) for every test prime: 1 = 65537^0 lies in each subgroup, which is the ROCA fingerprint.
    modulus = prod(_ROCA_PRIMES)
    n = 1 + modulus * ((1 << 2047) // modulus + 2)
    assert n.bit_length() == 2048 and n % 2 == 1 and _roca_vulnerable(n)
    jwk = {"kty": "RSA", "n": b64(n.to_bytes(256, "big")), "e": "AQAB", "alg": "RS256"}
    with pytest.raises(UnusableKey, match="ROCA"):
        Key.from_jwk(jwk)
    assert not _roca_vulnerable(_RSA.public_key().public_numbers().n)


@pytest.mark.parametrize(
    ("private", "alg"),
    [
        (_RSA, "RS256"),
        (ec.generate_private_key(ec.SECP521R1()), "ES512"),
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519"),
    ],
    ids=["rsa", "ec", "ed25519"],
)
def test_pem_formats(private: Any, alg: str) -> None:
    formats = [serialization.PrivateFormat.PKCS8]
    if alg != "Ed25519":
        formats.append(serialization.PrivateFormat.TraditionalOpenSSL)  # "RSA/EC PRIVATE KEY" labels
    public_formats = [serialization.PublicFormat.SubjectPublicKeyInfo]
    if alg == "RS256":
        public_formats.append(serialization.PublicFormat.PKCS1)  # "RSA PUBLIC KEY"
    verifiers = [
        Key.from_pem(private.public_key().public_bytes(serialization.Encoding.PEM, fmt), alg, kid="p")
        for fmt in public_formats
    ]
    for fmt in formats:
        pem = private.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        signer = Key.from_pem(b"comment line\n" + pem, alg, kid="p")
        token = encode(CLAIMS, signer)
        for verifier in verifiers:
            assert decode(token, verifier, now=NOW) == CLAIMS


def test_keyset_from_jwks_binds_entries_without_alg(keys: dict[str, Key]) -> None:
    bare = {name: value for name, value in keys["RS256"].to_jwk().items() if name != "alg"}
    with pytest.raises(UnusableKey):
        KeySet.from_jwks({"keys": [bare]})
    loaded = KeySet.from_jwks({"keys": [bare, keys["PS256"].to_jwk()]}, alg="RS256")
    assert [key.alg for key in loaded] == ["RS256", "PS256"]
    with pytest.raises(UnusableKey):
        KeySet.from_jwks({"keys": [bare]}, alg="ES256")


def test_huge_rsa_modulus_is_refused() -> None:
    n = (1 << 16400) + 1 + 2 * 3 * 5 * 7  # odd, larger than OpenSSL's ceiling
    jwk = {"kty": "RSA", "n": b64(n.to_bytes((n.bit_length() + 7) // 8, "big")), "e": "AQAB", "alg": "RS256"}
    assert code_of(Key.from_jwk, jwk) == "key"


# --- ML-DSA on AKP keys (RFC 9964): R5 and R6 -------------------------------------------------------------


def _mldsa_jwk(alg: str, private: bool = False) -> dict[str, Any]:
    return Key.generate(alg, kid="m").to_jwk(private=private)


@pytest.mark.parametrize("alg", MLDSA)
def test_akp_jwk_shapes(keys: dict[str, Key], alg: str) -> None:
    public = keys[alg].to_jwk()
    assert set(public) == {"kty", "alg", "pub", "kid"}
    assert (public["kty"], public["alg"]) == ("AKP", alg)
    assert len(unb64(public["pub"])) == PUB_SIZE[alg]
    private = keys[alg].to_jwk(private=True)
    assert set(private) == {"kty", "alg", "pub", "priv", "kid"}
    assert len(unb64(private["priv"])) == 32  # the seed, never the expanded private key


@pytest.mark.parametrize("alg", MLDSA)
def test_akp_thumbprint_covers_alg_kty_pub(keys: dict[str, Key], alg: str) -> None:
    import hashlib
    import json

    jwk = keys[alg].to_jwk()
    required = json.dumps({"alg": alg, "kty": "AKP", "pub": jwk["pub"]}, separators=(",", ":"))
    assert keys[alg].thumbprint() == b64(hashlib.sha256(required.encode()).digest())
    assert keys[alg].thumbprint() == keys[alg].public().thumbprint()  # priv is no required member


@pytest.mark.parametrize("alg", MLDSA)
def test_akp_pub_must_have_its_exact_length(alg: str) -> None:
    jwk = _mldsa_jwk(alg)
    raw = unb64(jwk["pub"])
    another_size = raw[: PUB_SIZE["ML-DSA-44"]] if alg != "ML-DSA-44" else raw + raw[:640]  # 44's, or 65's
    for wrong in (raw[:-1], raw + b"\0", b"", another_size):
        assert code_of(Key.from_jwk, {**jwk, "pub": b64(wrong)}) == "key"
    for bad in (None, 7, jwk["pub"] + "=", jwk["pub"].replace("-", "+").replace("_", "/") + "+"):
        assert code_of(Key.from_jwk, {**jwk, "pub": bad}) == "key"
    missing = {name: value for name, value in jwk.items() if name != "pub"}
    assert code_of(Key.from_jwk, missing) == "key"


@pytest.mark.parametrize("alg", MLDSA)
def test_akp_priv_must_be_the_32_byte_seed(alg: str) -> None:
    jwk = _mldsa_jwk(alg, private=True)
    seed = unb64(jwk["priv"])
    # 2560/4032/4896 bytes would be the expanded private key of FIPS 204, which RFC 9964 never uses
    for wrong in (seed[:-1], seed + b"\0", b"", seed * 80):
        assert code_of(Key.from_jwk, {**jwk, "priv": b64(wrong)}) == "key"
    for bad in (None, 1, jwk["priv"] + "="):
        assert code_of(Key.from_jwk, {**jwk, "priv": bad}) == "key"


@pytest.mark.parametrize("alg", MLDSA)
def test_akp_priv_must_give_pub(alg: str) -> None:
    jwk = _mldsa_jwk(alg, private=True)
    other = _mldsa_jwk(alg, private=True)
    assert code_of(Key.from_jwk, {**jwk, "priv": other["priv"]}) == "key"  # RFC 9964: mismatched parameters
    assert code_of(Key.from_jwk, {**jwk, "pub": other["pub"]}) == "key"
    assert Key.from_jwk({**jwk, "priv": other["priv"], "pub": other["pub"]}).thumbprint() != jwk["kid"]


@pytest.mark.parametrize("alg", MLDSA)
def test_akp_jwk_needs_its_own_alg_member(alg: str) -> None:
    jwk = _mldsa_jwk(alg)
    bare = {name: value for name, value in jwk.items() if name != "alg"}
    # RFC 9964: "alg" is REQUIRED for AKP keys, so alg= cannot stand in for it
    assert code_of(Key.from_jwk, bare, alg=alg) == "key"
    assert code_of(KeySet.from_jwks, {"keys": [bare]}, alg=alg) == "key"
    for other in MLDSA:
        if other != alg:
            assert code_of(Key.from_jwk, jwk, alg=other) == "key"  # contradicts the member
            assert code_of(Key.from_jwk, {**jwk, "alg": other}) == "key"  # another parameter set's length
    assert code_of(Key.from_jwk, {**jwk, "kty": "OKP"}) == "key"
    assert code_of(Key.from_jwk, {**jwk, "alg": "EdDSA"}) == "key"  # kty AKP is not EdDSA's OKP


def test_akp_members_of_other_key_types_are_ignored_like_any_unknown_member() -> None:
    jwk = _mldsa_jwk("ML-DSA-65")
    extra = {**jwk, "crv": "Ed25519", "x": "AAAA", "d": "AAAA", "k": "AAAA", "ext": True, "x5c": ["MII"]}
    key = Key.from_jwk(extra)
    assert key == Key.from_jwk(jwk) and not key.is_private  # "d" is no AKP member: not a private key
    assert key.to_jwk() == jwk


@pytest.mark.parametrize("alg", MLDSA)
def test_an_ml_dsa_key_is_bound_to_its_parameter_set(keys: dict[str, Key], alg: str) -> None:
    token = encode(CLAIMS, keys[alg])
    for other in MLDSA:
        if other != alg:
            assert code_of(decode, encode(CLAIMS, keys[other]), keys[alg].public(), now=NOW) == "algorithm"
    assert code_of(decode, token, keys["EdDSA"].public(), now=NOW) == "algorithm"
    assert code_of(decode, token, keys[alg].public(), algorithms=["EdDSA"], now=NOW) == "algorithm"
    assert decode(token, keys[alg].public(), algorithms=[alg], now=NOW) == CLAIMS


def _mldsa_private(alg: str) -> Any:
    return {"ML-DSA-44": mldsa.MLDSA44PrivateKey, "ML-DSA-65": mldsa.MLDSA65PrivateKey,
            "ML-DSA-87": mldsa.MLDSA87PrivateKey}[alg].generate()


@pytest.mark.parametrize("alg", MLDSA)
def test_ml_dsa_pem_import(alg: str) -> None:
    private = _mldsa_private(alg)
    signer = Key.from_pem(_pem(private), alg, kid="p")
    verifier = Key.from_pem(_pem(private, public=True), alg, kid="p")
    assert signer.is_private and not verifier.is_private
    assert decode(encode(CLAIMS, signer), verifier, now=NOW) == CLAIMS
    # the PEM's seed is the JWK's priv
    assert unb64(signer.to_jwk(private=True)["priv"]) == private.private_bytes_raw()
    encrypted = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"pw"))
    assert code_of(Key.from_pem, encrypted, alg) == "key"
    assert Key.from_pem(encrypted, alg, password=b"pw") == Key.from_pem(_pem(private), alg)


@pytest.mark.parametrize("alg", MLDSA)
def test_ml_dsa_pem_of_another_parameter_set_or_type_is_refused(alg: str) -> None:
    for other in MLDSA:
        if other != alg:
            assert code_of(Key.from_pem, _pem(_mldsa_private(other)), alg) == "key"
            assert code_of(Key.from_pem, _pem(_mldsa_private(other), public=True), alg) == "key"
    assert code_of(Key.from_pem, _pem(ed25519.Ed25519PrivateKey.generate()), alg) == "key"
    assert code_of(Key.from_pem, _pem(_mldsa_private(alg)), "EdDSA") == "key"
    assert code_of(Key.from_pem, _pem(_mldsa_private(alg)), "HS256") == "key"


@pytest.mark.parametrize("alg", MLDSA)
def test_generate_makes_a_fresh_ml_dsa_key(alg: str) -> None:
    first, second = Key.generate(alg), Key.generate(alg)
    assert first.alg == alg and first.can_sign and first != second
    assert first.to_jwk(private=True)["priv"] != second.to_jwk(private=True)["priv"]


def _pkcs8(inner: bytes) -> bytes:
    def tlv(tag: int, body: bytes) -> bytes:
        size = len(body)
        length = bytes([size]) if size < 128 else bytes([0x82, size >> 8, size & 0xFF])
        return bytes([tag]) + length + body

    ml_dsa_65 = bytes.fromhex("300b0609608648016503040312")  # AlgorithmIdentifier id-ml-dsa-65 (RFC 9881)
    der = tlv(0x30, bytes.fromhex("020100") + ml_dsa_65 + tlv(0x04, inner))
    return b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(der) + b"-----END PRIVATE KEY-----\n"


def test_ml_dsa_pem_is_the_seed_form_only() -> None:
    # RFC 9881 has three PKCS#8 forms: seed [0], expandedKey, both. RFC 9964's keys are the seed; the other
    # two (made here with dilithium-py's expanded key of the same seed) are refused.
    from dilithium_py.ml_dsa import ML_DSA_65

    seed = bytes(range(32))
    public, expanded = ML_DSA_65.key_derive(seed)
    key = Key.from_pem(_pkcs8(b"\x80\x20" + seed), "ML-DSA-65")
    assert unb64(key.to_jwk()["pub"]) == public
    assert code_of(Key.from_pem, _pkcs8(b"\x04\x82\x0f\xc0" + expanded), "ML-DSA-65") == "key"
    both = b"\x04\x20" + seed + b"\x04\x82\x0f\xc0" + expanded
    both_form = _pkcs8(b"\x30\x82" + len(both).to_bytes(2, "big") + both)
    assert code_of(Key.from_pem, both_form, "ML-DSA-65") == "key"
    assert code_of(Key.from_pem, _pkcs8(b"\x80\x1f" + seed[:31]), "ML-DSA-65") == "key"
