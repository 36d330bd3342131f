"""Hostile tokens, keyed by rule (R1-R20 of docs/token-rules.md); every case asserts its exact error code."""

from __future__ import annotations

import base64
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from jwtkit import JWTError, Key, KeySet, decode, encode, jwa
from jwtkit._jose.algorithms import ALGORITHMS

from ._tokens import EXP, NOW, SECRET, b64, forge, hs_key, segment

HS = hs_key()
HS_KID = hs_key(kid="k1")
ES = Key.generate("ES256", kid="es")
RSA_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM_PUBLIC = RSA_PRIVATE.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
RS = Key.from_pem(
    RSA_PRIVATE.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ),
    "RS256",
)
PS = Key.from_pem(RSA_PEM_PUBLIC, "PS256")
CLAIMS = {"sub": "alice", "exp": EXP}
HEADER = {"alg": "HS256", "typ": "JWT"}
GOOD = forge(HEADER, CLAIMS, HS)


def swap_last(token: str, replacement: str) -> str:
    return token[:-1] + replacement


def es_raw_signature(key: Key, token: str) -> tuple[int, int, str]:
    signing_input, _, sig = token.rpartition(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"), signing_input


P256_N = ALGORITHMS["ES256"].curve_order
ES_TOKEN = encode(CLAIMS, ES)
_R, _S, _ES_INPUT = es_raw_signature(ES, ES_TOKEN)


def es_token_with(r: int, s: int, size: int = 32) -> str:
    return f"{_ES_INPUT}.{b64(r.to_bytes(size, 'big') + s.to_bytes(size, 'big'))}"


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def pss_max_salt_token() -> str:
    signing_input = f"{segment({'alg': 'PS256'})}.{segment(CLAIMS)}"
    sig = RSA_PRIVATE.sign(
        signing_input.encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH),
        hashes.SHA256(),
    )
    return f"{signing_input}.{b64(sig)}"


def es_der_token() -> str:
    private = ec.generate_private_key(ec.SECP256R1())
    key = Key.from_pem(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        "ES256",
    )
    signing_input = f"{segment({'alg': 'ES256'})}.{segment(CLAIMS)}"
    der = private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    assert decode_dss_signature(der)
    global ES_DER_KEY
    ES_DER_KEY = key
    return f"{signing_input}.{b64(der)}"


ES_DER_KEY: Key
ES_DER_TOKEN = es_der_token()
ML44 = Key.generate("ML-DSA-44", kid="ml44")
ML65 = Key.generate("ML-DSA-65", kid="ml65")
ML65_TOKEN = encode(CLAIMS, ML65)
_ML65_INPUT, _, _ML65_SIG = ML65_TOKEN.rpartition(".")
ML65_SIGNATURE = base64.urlsafe_b64decode(_ML65_SIG + "==")


def ml65_token_with(signature: bytes) -> str:
    return f"{_ML65_INPUT}.{b64(signature)}"
FIVE_HS = [hs_key(secret=bytes([i]) * 32) for i in range(1, 6)]
ATTACKER = hs_key(secret=b"attacker-secret-attacker-secret!")


@dataclass
class Case:
    rule: str
    name: str
    token: str | bytes | object
    code: str
    key: Key | KeySet = HS
    options: dict[str, Any] = field(default_factory=dict)


CASES = [
    # R1: length first, exactly two periods.
    Case("R1", "longer than the default 8192", "a" * 8193, "too_large"),
    Case(
        "R1",
        "longer than max_length, even if valid",
        GOOD,
        "too_large",
        options={"max_length": len(GOOD) - 1},
    ),
    Case("R1", "bytes longer than max_length", GOOD.encode(), "too_large", options={"max_length": 10}),
    Case("R1", "huge garbage is not parsed", "." * 100_000, "too_large"),
    Case("R1", "one period", "abc.def", "malformed"),
    Case("R1", "three periods", GOOD + ".", "malformed"),
    # R2: canonical unpadded base64url segments.
    Case("R2", "padding", GOOD + "=", "malformed"),
    Case("R2", "standard alphabet '+'", swap_last(GOOD, "+"), "malformed"),
    Case("R2", "standard alphabet '/'", GOOD.replace(".", "./", 1), "malformed"),
    Case("R2", "whitespace", GOOD.replace(".", " .", 1), "malformed"),
    Case("R2", "newline at the end", GOOD + "\n", "malformed"),
    Case("R2", "length 4k+1", GOOD + "A" * ((1 - len(GOOD.rsplit(".", 1)[1])) % 4), "malformed"),
    Case(
        "R2",
        "non-zero unused bits",
        swap_last(GOOD, chr(ord(GOOD[-1]) + 1) if GOOD[-1] != "w" else "x"),
        "malformed",
    ),
    Case("R2", "empty header", "." + GOOD.split(".", 1)[1], "malformed"),
    Case("R2", "empty signature", GOOD.rsplit(".", 1)[0] + ".", "malformed"),
    Case("R2", "non-ASCII", GOOD.replace(".", "é.", 1), "malformed"),
    Case("R2", "not a string", 12345, "malformed"),
    Case("R2", "None", None, "malformed"),
    # R3: strict header JSON and member types.
    Case("R3", "header not JSON", forge(b"{alg:HS256}", CLAIMS, HS), "malformed"),
    Case("R3", "header is an array", forge(b'["HS256"]', CLAIMS, HS), "malformed"),
    Case("R3", "duplicate alg", forge(b'{"alg":"none","alg":"HS256"}', CLAIMS, HS), "malformed"),
    Case("R3", "NaN in header", forge(b'{"alg":"HS256","x":NaN}', CLAIMS, HS), "malformed"),
    Case("R3", "Infinity in header", forge(b'{"alg":"HS256","x":-Infinity}', CLAIMS, HS), "malformed"),
    Case("R3", "1e400 in header", forge(b'{"alg":"HS256","x":1e400}', CLAIMS, HS), "malformed"),
    Case("R3", "deep nesting", forge(f'{{"alg":"HS256","x":{deep(17)}}}'.encode(), CLAIMS, HS), "malformed"),
    Case(
        "R3",
        "very deep nesting",
        forge(f'{{"alg":"HS256","x":{deep(3000)}}}'.encode(), CLAIMS, HS),
        "malformed",
    ),
    Case("R3", "BOM", forge(b'\xef\xbb\xbf{"alg":"HS256"}', CLAIMS, HS), "malformed"),
    Case("R3", "invalid UTF-8", forge(b'{"alg":"HS256","x":"\xff"}', CLAIMS, HS), "malformed"),
    Case("R3", "lone surrogate", forge(b'{"alg":"HS256","x":"\\ud800"}', CLAIMS, HS), "malformed"),
    Case("R3", "UTF-16 JSON", forge('{"alg":"HS256"}'.encode("utf-16"), CLAIMS, HS), "malformed"),
    Case("R3", "alg missing", forge({"typ": "JWT"}, CLAIMS, HS), "header"),
    Case("R3", "alg a number", forge({"alg": 256}, CLAIMS, HS), "header"),
    Case("R3", "alg a list", forge({"alg": ["HS256"]}, CLAIMS, HS), "header"),
    Case("R3", "kid a number", forge({"alg": "HS256", "kid": 1}, CLAIMS, HS), "header"),
    Case("R3", "typ null", forge({"alg": "HS256", "typ": None}, CLAIMS, HS), "header"),
    Case("R3", "cty a list", forge({"alg": "HS256", "cty": ["JWT"]}, CLAIMS, HS), "header"),
    Case("R3", "crit empty", forge({"alg": "HS256", "crit": []}, CLAIMS, HS), "header"),
    # R4: alg allow-list, never none.
    Case("R4", "none", forge({"alg": "none"}, CLAIMS, signature=b"x"), "algorithm"),
    Case("R4", "None", forge({"alg": "None"}, CLAIMS, signature=b"x"), "algorithm"),
    Case("R4", "NONE", forge({"alg": "NONE"}, CLAIMS, signature=b"x"), "algorithm"),
    Case("R4", "nOnE", forge({"alg": "nOnE"}, CLAIMS, signature=b"x"), "algorithm"),
    Case(
        "R4",
        "none even when allowed",
        forge({"alg": "none"}, CLAIMS, signature=b"x"),
        "algorithm",
        options={"algorithms": ["none"]},
    ),
    Case("R4", "lower-case hs256", forge({"alg": "hs256"}, CLAIMS, HS, alg="HS256"), "algorithm"),
    Case("R4", "trailing space", forge({"alg": "HS256 "}, CLAIMS, HS, alg="HS256"), "algorithm"),
    Case("R4", "unknown alg", forge({"alg": "HS1"}, CLAIMS, signature=b"x" * 20), "algorithm"),
    Case("R4", "not in algorithms", GOOD, "algorithm", options={"algorithms": ["RS256"]}),
    # R5: the key's one algorithm; key type fits; use/key_ops.
    Case(
        "R5",
        "HS384 token for an HS256 key",
        forge({"alg": "HS384"}, CLAIMS, signature=b"x" * 48),
        "algorithm",
    ),
    Case(
        "R5",
        "HMAC with the RSA public key as secret (CVE-2022-29217)",
        forge({"alg": "HS256"}, CLAIMS, Key.from_secret(RSA_PEM_PUBLIC)),
        "algorithm",
        key=PS,
    ),
    Case("R5", "RS256 token for a PS256 key", forge({"alg": "RS256"}, CLAIMS, RS), "algorithm", key=PS),
    Case(
        "R5",
        "EdDSA token for an ES256 key",
        forge({"alg": "EdDSA"}, CLAIMS, signature=b"x" * 64),
        "algorithm",
        key=ES,
    ),
    Case(
        "R5",
        "key with use=enc",
        GOOD,
        "key",
        key=Key.from_jwk({**HS.to_jwk(private=True), "use": "enc"}),
    ),
    Case(
        "R5",
        "key_ops without verify",
        GOOD,
        "key",
        key=Key.from_jwk({**HS.to_jwk(private=True), "key_ops": ["sign"]}),
    ),
    Case(
        "R5",
        "ML-DSA-65 token for an ML-DSA-44 key",
        forge({"alg": "ML-DSA-65"}, CLAIMS, ML65),
        "algorithm",
        key=ML44.public(),
    ),
    Case("R5", "ML-DSA-65 token for an EdDSA key", ML65_TOKEN, "algorithm", key=Key.generate("EdDSA")),
    Case("R5", "ML-DSA-65 token for an HMAC key", ML65_TOKEN, "algorithm"),
    Case(
        "R5",
        "ML-DSA-44 alg over an ML-DSA-65 signature, for the same kid",
        ml65_token_with(ML65_SIGNATURE).replace(
            segment({"alg": "ML-DSA-65", "kid": "ml65", "typ": "JWT"}),
            segment({"alg": "ML-DSA-44", "kid": "ml65", "typ": "JWT"}),
        ),
        "algorithm",
        key=KeySet([ML65.public()]),
    ),
    # R6: weak keys never exist on our side, so tokens forged with them fail (key refusals: test_keys.py).
    Case(
        "R6",
        "HS256 forged with an empty secret",
        forge(
            HEADER,
            CLAIMS,
            signature=hmac.digest(b"", f"{segment(HEADER)}.{segment(CLAIMS)}".encode(), "sha256"),
        ),
        "signature",
    ),
    Case(
        "R6",
        "HS256 forged with a 1-byte secret",
        forge(
            HEADER,
            CLAIMS,
            signature=hmac.digest(b"k", f"{segment(HEADER)}.{segment(CLAIMS)}".encode(), "sha256"),
        ),
        "signature",
    ),
    # R7: crit, b64, zip refused.
    Case("R7", "crit", forge({"alg": "HS256", "crit": ["exp"], "exp": 1}, CLAIMS, HS), "header"),
    Case("R7", "b64 false", forge({"alg": "HS256", "b64": False, "crit": ["b64"]}, CLAIMS, HS), "header"),
    Case("R7", "b64 true", forge({"alg": "HS256", "b64": True}, CLAIMS, HS), "header"),
    Case("R7", "zip", forge({"alg": "HS256", "zip": "DEF"}, CLAIMS, HS), "header"),
    # R8: embedded or referenced keys are never used.
    Case(
        "R8",
        "jwk header with the attacker's key",
        forge({"alg": "HS256", "jwk": ATTACKER.to_jwk(private=True)}, CLAIMS, ATTACKER),
        "signature",
    ),
    Case(
        "R8",
        "jku",
        forge({"alg": "HS256", "jku": "https://evil.example/jwks"}, CLAIMS, ATTACKER),
        "signature",
    ),
    Case(
        "R8",
        "x5u",
        forge({"alg": "HS256", "x5u": "https://evil.example/cert"}, CLAIMS, ATTACKER),
        "signature",
    ),
    Case("R8", "x5c", forge({"alg": "HS256", "x5c": ["MIIB"]}, CLAIMS, ATTACKER), "signature"),
    # R9: kid must match; without kid, a bounded number of keys of that alg.
    Case(
        "R9", "unknown kid", forge({"alg": "HS256", "kid": "nope"}, CLAIMS, HS), "key", key=KeySet([HS_KID])
    ),
    Case("R9", "kid for a key without kid", forge({"alg": "HS256", "kid": "k1"}, CLAIMS, HS), "key"),
    Case(
        "R9", "kid that is not the key's", forge({"alg": "HS256", "kid": "k2"}, CLAIMS, HS), "key", key=HS_KID
    ),
    Case(
        "R9",
        "kid known but bound to another alg",
        forge({"alg": "HS512", "kid": "k1"}, CLAIMS, signature=b"x" * 64),
        "algorithm",
        key=KeySet([HS_KID]),
    ),
    Case(
        "R9",
        "no kid, no key of that alg",
        forge({"alg": "ES256"}, CLAIMS, signature=b"x" * 64),
        "algorithm",
        key=KeySet([HS_KID]),
    ),
    Case(
        "R9",
        "no kid: only the first few keys are tried",
        forge({"alg": "HS256"}, CLAIMS, FIVE_HS[4]),
        "signature",
        key=KeySet(FIVE_HS),
    ),
    # R10: exact lengths, then the crypto.
    Case("R10", "HMAC signature one byte short", forge(HEADER, CLAIMS, signature=b"x" * 31), "signature"),
    Case("R10", "HMAC truncated to 16 bytes", forge(HEADER, CLAIMS, signature=b"x" * 16), "signature"),
    Case("R10", "HMAC signature of another secret", forge(HEADER, CLAIMS, ATTACKER), "signature"),
    Case("R10", "ES256 DER signature", ES_DER_TOKEN, "signature", key=Key.generate("ES256")),
    Case("R10", "ES256 r = s = 0 (CVE-2022-21449)", es_token_with(0, 0), "signature", key=ES),
    Case("R10", "ES256 r = s = n", es_token_with(P256_N, P256_N), "signature", key=ES),
    Case("R10", "ES256 65 bytes", f"{_ES_INPUT}.{b64(bytes(65))}", "signature", key=ES),
    Case("R10", "PSS with a maximum-length salt", pss_max_salt_token(), "signature", key=PS),
    Case(
        "R10",
        "RSA signature one byte short",
        forge({"alg": "PS256"}, CLAIMS, signature=b"x" * 255),
        "signature",
        key=PS,
    ),
    Case("R10", "ML-DSA-65 signature one byte short", ml65_token_with(ML65_SIGNATURE[:-1]), "signature",
         key=ML65.public()),
    Case("R10", "ML-DSA-65 signature one byte long", ml65_token_with(ML65_SIGNATURE + b"\0"), "signature",
         key=ML65.public()),
    Case("R10", "ML-DSA-65 signature of ML-DSA-44 length", ml65_token_with(ML65_SIGNATURE[:2420]),
         "signature", key=ML65.public()),
    Case("R10", "ML-DSA-65 signature of zeros", ml65_token_with(bytes(3309)), "signature", key=ML65.public()),
    Case("R10", "ML-DSA-65 signature with one bit flipped",
         ml65_token_with(bytes([ML65_SIGNATURE[0] ^ 1]) + ML65_SIGNATURE[1:]), "signature",
         key=ML65.public()),
    Case("R10", "ML-DSA-65 signature by another ML-DSA-65 key", forge({"alg": "ML-DSA-65", "kid": "ml65"},
         CLAIMS, Key.generate("ML-DSA-65", kid="ml65")), "signature", key=ML65.public()),
    # R11: payload parsed only after the signature, same strictness, an object.
    Case("R11", "payload not JSON", forge(HEADER, b"not json", HS), "malformed"),
    Case("R11", "payload an array", forge(HEADER, b"[1]", HS), "malformed"),
    Case("R11", "payload a string", forge(HEADER, b'"exp"', HS), "malformed"),
    Case("R11", "payload duplicate exp", forge(HEADER, f'{{"exp":1,"exp":{EXP}}}'.encode(), HS), "malformed"),
    Case("R11", "payload NaN", forge(HEADER, b'{"exp":NaN}', HS), "malformed"),
    Case("R11", "payload deep", forge(HEADER, f'{{"exp":{EXP},"x":{deep(40)}}}'.encode(), HS), "malformed"),
    Case("R11", "payload empty", forge(HEADER, b"", HS), "malformed"),
    Case("R11", "bad payload, bad signature: signature first", forge(HEADER, b"[", ATTACKER), "signature"),
    # R12: NumericDates.
    Case("R12", "exp a string", forge(HEADER, {"exp": str(EXP)}, HS), "claim"),
    Case("R12", "exp true", forge(HEADER, {"exp": True}, HS), "claim"),
    Case("R12", "exp null", forge(HEADER, {"exp": None}, HS), "claim"),
    Case("R12", "exp beyond the double range", forge(HEADER, f'{{"exp":{10**400}}}'.encode(), HS), "claim"),
    Case("R12", "exp passed", forge(HEADER, {"exp": NOW}, HS), "expired"),
    Case("R12", "nbf ahead", forge(HEADER, {"exp": EXP, "nbf": NOW + 1}, HS), "not_yet_valid"),
    Case("R12", "iat ahead", forge(HEADER, {"exp": EXP, "iat": NOW + 1}, HS), "issued_in_future"),
    Case("R12", "iat a list", forge(HEADER, {"exp": EXP, "iat": [NOW]}, HS), "claim"),
    Case("R12", "exp missing (required by default)", forge(HEADER, {"sub": "alice"}, HS), "claim"),
    # R13: iss/sub/jti strings, exact iss.
    Case(
        "R13",
        "iss substring",
        forge(HEADER, {**CLAIMS, "iss": "jwtki"}, HS),
        "claim",
        options={"issuer": "jwtkit"},
    ),
    Case(
        "R13",
        "iss list",
        forge(HEADER, {**CLAIMS, "iss": ["jwtkit"]}, HS),
        "claim",
        options={"issuer": "jwtkit"},
    ),
    Case(
        "R13",
        "iss case",
        forge(HEADER, {**CLAIMS, "iss": "JWTKIT"}, HS),
        "claim",
        options={"issuer": "jwtkit"},
    ),
    Case("R13", "iss missing", GOOD, "claim", options={"issuer": "jwtkit"}),
    Case("R13", "sub a number", forge(HEADER, {**CLAIMS, "sub": 1}, HS), "claim"),
    Case("R13", "sub other", GOOD, "claim", options={"subject": "bob"}),
    Case("R13", "jti a number", forge(HEADER, {**CLAIMS, "jti": 7}, HS), "claim"),
    # R14: aud.
    Case("R14", "aud but none expected", forge(HEADER, {**CLAIMS, "aud": "api"}, HS), "claim"),
    Case("R14", "aud missing", GOOD, "claim", options={"audience": "api"}),
    Case(
        "R14", "aud other", forge(HEADER, {**CLAIMS, "aud": "web"}, HS), "claim", options={"audience": "api"}
    ),
    Case(
        "R14",
        "aud empty list",
        forge(HEADER, {**CLAIMS, "aud": []}, HS),
        "claim",
        options={"audience": "api"},
    ),
    Case(
        "R14",
        "aud list with a number",
        forge(HEADER, {**CLAIMS, "aud": ["api", 1]}, HS),
        "claim",
        options={"audience": "api"},
    ),
    Case(
        "R14",
        "aud substring",
        forge(HEADER, {**CLAIMS, "aud": "ap"}, HS),
        "claim",
        options={"audience": "api"},
    ),
    # R15: typ.
    Case("R15", "typ missing", forge({"alg": "HS256"}, CLAIMS, HS), "header", options={"typ": "at+jwt"}),
    Case(
        "R15",
        "access token used as refresh",
        forge({"alg": "HS256", "typ": "at+jwt"}, CLAIMS, HS),
        "header",
        options={"typ": "refresh+jwt"},
    ),
    Case("R15", "typ JWT where at+jwt required", GOOD, "header", options={"typ": "at+jwt"}),
    # R16: no other exception, whatever the input.
    Case("R16", "random bytes", bytes(range(256)), "malformed"),
    Case("R16", "bytearray garbage", bytearray(b"\x00.\x00.\x00"), "malformed"),
    Case(
        "R16",
        "huge integer in header",
        forge(f'{{"alg":"HS256","x":{"9" * 5000}}}'.encode(), CLAIMS, HS),
        "malformed",
    ),
    Case(
        "R16", "huge integer in payload", forge(HEADER, f'{{"exp":{"9" * 5000}}}'.encode(), HS), "malformed"
    ),
    # R17: compact JWS only.
    Case("R17", "JWE (five segments)", "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", "malformed"),
    Case("R17", "JSON serialisation", json.dumps({"payload": "e30", "signatures": []}), "malformed"),
    # R18: the token string is malleable; out-of-range malleations are still refused.
    Case("R18", "ES256 s + n", es_token_with(_R, _S + P256_N, 33), "signature", key=ES),
    # R19: no off switch; an empty allow-list allows nothing.
    Case("R19", "empty algorithms", GOOD, "algorithm", options={"algorithms": []}),
    # R20: no key is ever fetched: a token pointing at a JWKS URL with its own kid is refused.
    Case(
        "R20",
        "jku with a fresh kid",
        forge({"alg": "HS256", "kid": "fresh", "jku": "https://evil.example/jwks"}, CLAIMS, ATTACKER),
        "key",
        key=KeySet([HS_KID]),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{case.rule}-{case.name}" for case in CASES])
def test_hostile_token_is_refused_with_its_code(case: Case) -> None:
    with pytest.raises(JWTError) as caught:
        decode(case.token, case.key, now=NOW, **case.options)  # type: ignore[arg-type]
    assert caught.value.code == case.code, str(caught.value)


def test_every_rule_has_a_case() -> None:
    assert {case.rule for case in CASES} == {f"R{n}" for n in range(1, 21)}


@pytest.mark.parametrize("case", CASES, ids=[f"{case.rule}-{case.name}" for case in CASES])
def test_messages_never_echo_the_token(case: Case) -> None:
    with pytest.raises(JWTError) as caught:
        decode(case.token, case.key, now=NOW, **case.options)  # type: ignore[arg-type]
    message = str(caught.value)
    # Raised "from None": no chained cause can carry the token or key bytes.
    assert caught.value.__cause__ is None
    if isinstance(case.token, str):
        for part in case.token.split("."):
            if len(part) >= 8:
                assert part not in message
    assert SECRET.decode() not in message


def test_good_token_passes() -> None:
    assert decode(GOOD, HS, now=NOW) == CLAIMS


def test_exactly_max_length_passes() -> None:
    assert decode(GOOD, HS, now=NOW, max_length=len(GOOD)) == CLAIMS


def test_unknown_non_critical_parameters_are_ignored() -> None:  # R7
    assert decode(forge({"alg": "HS256", "foo": {"bar": [1]}}, CLAIMS, HS), HS, now=NOW) == CLAIMS


def test_typ_compares_case_insensitively_with_implied_prefix() -> None:  # R15
    for header_typ, wanted in (
        ("application/AT+JWT", "at+jwt"),
        ("at+jwt", "application/at+jwt"),
        ("JWT", "jwt"),
    ):
        token = forge({"alg": "HS256", "typ": header_typ}, CLAIMS, HS)
        assert decode(token, HS, now=NOW, typ=wanted) == CLAIMS


def test_ecdsa_malleated_signature_verifies_to_the_same_claims() -> None:  # R18
    # (r, n - s) is a second valid signature: replay and revocation lists must key on jti or the claims.
    malleated = es_token_with(_R, P256_N - _S)
    assert malleated != ES_TOKEN
    assert decode(malleated, ES, now=NOW) == decode(ES_TOKEN, ES, now=NOW)


def test_same_jwk_bound_to_two_algorithms_under_one_kid() -> None:  # R9
    rsa_key = {name: value for name, value in RS.to_jwk(private=True).items() if name != "alg"}
    keys = KeySet([Key.from_jwk({**rsa_key, "kid": "r"}, alg=alg) for alg in ("RS256", "PS256")])
    for alg in ("RS256", "PS256"):
        signer = Key.from_jwk({**rsa_key, "kid": "r"}, alg=alg)
        assert decode(encode(CLAIMS, signer), keys, now=NOW) == CLAIMS


def test_no_kid_tries_keys_of_the_alg() -> None:  # R9
    token = forge({"alg": "HS256"}, CLAIMS, FIVE_HS[2])
    assert decode(token, KeySet(FIVE_HS), now=NOW) == CLAIMS


def test_decode_has_no_off_switch() -> None:  # R19
    import inspect

    parameters = list(inspect.signature(decode).parameters)
    assert parameters == [
        "token", "key", "algorithms", "issuer", "audience", "subject",
        "leeway", "require", "typ", "now", "max_length",
    ]  # fmt: skip
    with pytest.raises(TypeError):
        decode(GOOD, HS, verify=False)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        decode(GOOD, None)  # type: ignore[arg-type]


def test_refusals_do_not_depend_on_the_header_cache() -> None:
    token = forge({"alg": "HS256", "crit": ["x"], "x": 1}, CLAIMS, HS)
    for _ in range(3):
        with pytest.raises(JWTError) as caught:
            decode(token, HS, now=NOW)
        assert caught.value.code == "header"


def test_jwa_verify_says_no_to_any_length() -> None:  # R10
    signing_input = GOOD.rsplit(".", 1)[0].encode()
    for size in (0, 1, 31, 33, 64, 1000):
        assert jwa.verify("HS256", HS, signing_input, b"\x00" * size) is False
    assert jwa.verify("ES256", ES, signing_input, b"\x00" * 64) is False
