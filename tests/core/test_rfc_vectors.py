"""Published examples, typed in from the RFCs: RFC 7515 Appendix A, RFC 8037 §A.3-A.4, RFC 7638 §3.1; and
RFC 9964's (ML-DSA) example keys and JWSs, from tests/core/vectors/rfc9964 (its README says where from)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from jwtkit import Key, decode, encode, jwa
from jwtkit._jose import jws

# RFC 7515 A.1: HMAC SHA-256. The header and payload contain CRLF whitespace; exp = 1300819380.
A1_KEY = {
    "kty": "oct",
    "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
}
A1_TOKEN = (
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)
A_CLAIMS = {"iss": "joe", "exp": 1300819380, "http://example.com/is_root": True}
BEFORE_EXP = 1300819000

# RFC 7515 A.2: RSASSA-PKCS1-v1_5 SHA-256 (a 2048-bit key).
A2_KEY = {
    "kty": "RSA",
    "n": "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddx"
    "HmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMs"
    "D1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSH"
    "SXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdV"
    "MTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8"
    "NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
    "e": "AQAB",
    "d": "Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97I"
    "jlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0"
    "BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn"
    "439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYT"
    "CBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuhLh"
    "BOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ",
    "p": "4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdi"
    "YrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPG"
    "BY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc",
    "q": "uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxa"
    "ewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA"
    "-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc",
    "dp": "BwKfV3Akq5_MFZDFZCnW-wzl-CCo83WoZvnLQwCTeDv8uzluRSnm71I3Q"
    "CLdhrqE2e9YkxvuxdBfpT_PI7Yz-FOKnu1R6HsJeDCjn12Sk3vmAktV2zb"
    "34MCdy7cpdTh_YVr7tss2u6vneTwrA86rZtu5Mbr1C1XsmvkxHQAdYo0",
    "dq": "h_96-mK1R_7glhsum81dZxjTnYynPbZpHziZjeeHcXYsXaaMwkOlODsWa"
    "7I9xXDoRwbKgB719rrmI2oKr6N3Do9U0ajaHF-NKJnwgjMd2w9cjz3_-ky"
    "NlxAr2v4IKhGNpmM5iIgOS1VZnOZ68m6_pbLBSp3nssTdlqvd0tIiTHU",
    "qi": "IYd7DHOhrWvxkwPQsRM2tOgrjbcrfvtQJipd-DlcxyVuuM9sQLdgjVk2o"
    "y26F0EmpScGLq2MowX7fhd_QJQ3ydy5cY7YIBi87w93IKLEdfnbJtoOPLU"
    "W0ITrJReOgo1cq9SbsxYawBgfp_gh6A5603k2-ZQwVK0JKSHuLFkuQ3U",
}
A2_TOKEN = (
    "eyJhbGciOiJSUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7"
    "AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4"
    "BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K"
    "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv"
    "hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB"
    "p0igcN_IoypGlUPQGe77Rw"
)

# RFC 7515 A.3: ECDSA P-256 SHA-256.
A3_KEY = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    "d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI",
}
A3_TOKEN = (
    "eyJhbGciOiJFUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
)

# RFC 7515 A.4: ECDSA P-521 SHA-512, over the non-JSON payload "Payload".
A4_KEY = {
    "kty": "EC",
    "crv": "P-521",
    "x": "AekpBQ8ST8a8VcfVOTNl353vSrDCLLJXmPk06wTjxrrjcBpXp5EOnYG_NjFZ6OvLFV1jSfS9tsz4qUxcWceqwQGk",
    "y": "ADSmRA43Z1DSNx_RvcLI87cdL07l6jQyyBXMoxVg_l2Th-x3S1WDhjDly79ajL4Kkd0AZMaZmh9ubmf63e3kyMj2",
    "d": "AY5pb7A0UFiB3RELSD64fTLOSV_jazdF7fLYyuTw8lOfRhWg6Y6rUrPAxerEzgdRhajnu0ferB0d53vM9mE15j2C",
}
A4_TOKEN = (
    "eyJhbGciOiJFUzUxMiJ9.UGF5bG9hZA."
    "AdwMgeerwtHoh-l192l60hp9wAHZFVJbLfD_UxMi70cwnZOYaRI1bKPWROc-mZZq"
    "wqT2SI-KGDKB34XO0aw_7XdtAG8GaSwFKdCAPZgoXD2YBJZCPEX3xKpRwcdOO8Kp"
    "EHwJjyqOgzDO7iKvU8vcnwNrmxYbSW9ERBXukOXolLzeO_Jn"
)

# RFC 7515 A.5: an Unsecured JWS (alg "none", empty signature).
A5_TOKEN = (
    "eyJhbGciOiJub25lIn0."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
)

# RFC 8037 A.1-A.4: Ed25519.
ED_KEY = {
    "kty": "OKP",
    "crv": "Ed25519",
    "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
}
ED_TOKEN = (
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)


def test_a1_hmac_sha256_verifies() -> None:
    key = Key.from_jwk(A1_KEY, alg="HS256")
    assert decode(A1_TOKEN, key, now=BEFORE_EXP) == A_CLAIMS


def test_a1_expired_after_its_exp() -> None:
    key = Key.from_jwk(A1_KEY, alg="HS256")
    with pytest.raises(Exception) as caught:
        decode(A1_TOKEN, key, now=1300819380)
    assert getattr(caught.value, "code", None) == "expired"


@pytest.mark.parametrize("public_only", [False, True])
def test_a2_rs256_verifies(public_only: bool) -> None:
    key = Key.from_jwk(A2_KEY, alg="RS256")
    assert key.is_private
    if public_only:
        key = key.public()
    assert decode(A2_TOKEN, key, now=BEFORE_EXP) == A_CLAIMS


def test_a2_rs256_signing_is_deterministic_and_matches() -> None:
    # PKCS#1 v1.5 is deterministic: signing the same input reproduces the RFC's signature exactly.
    key = Key.from_jwk(A2_KEY, alg="RS256")
    signing_input, _, signature = A2_TOKEN.rpartition(".")
    assert jwa.sign("RS256", key, signing_input.encode()) == jws.base64url.decode(signature)


def test_a3_es256_verifies() -> None:
    key = Key.from_jwk(A3_KEY, alg="ES256")
    assert decode(A3_TOKEN, key.public(), now=BEFORE_EXP) == A_CLAIMS


def test_a4_es512_verifies_non_json_payload() -> None:
    key = Key.from_jwk(A4_KEY, alg="ES512")
    header, payload = jws.verify_compact(A4_TOKEN, key.public())
    assert header == {"alg": "ES512"}
    assert payload == b"Payload"


def test_a4_payload_is_not_a_jwt() -> None:
    key = Key.from_jwk(A4_KEY, alg="ES512")
    with pytest.raises(Exception) as caught:
        decode(A4_TOKEN, key)
    assert getattr(caught.value, "code", None) == "malformed"


@pytest.mark.parametrize("key", [Key.from_jwk(A1_KEY, alg="HS256"), Key.from_jwk(A3_KEY, alg="ES256")])
def test_a5_unsecured_is_refused(key: Key) -> None:
    with pytest.raises(Exception) as caught:
        decode(A5_TOKEN, key, now=BEFORE_EXP)
    assert getattr(caught.value, "code", None) == "malformed"  # empty signature (R2)


def test_a5_refused_even_with_a_signature_and_none_allowed() -> None:
    key = Key.from_jwk(A1_KEY, alg="HS256")
    with pytest.raises(Exception) as caught:
        decode(A5_TOKEN + "AAAA", key, algorithms=["none"], now=BEFORE_EXP)
    assert getattr(caught.value, "code", None) == "algorithm"


def test_rfc8037_ed25519_verifies_and_signs_identically() -> None:
    key = Key.from_jwk(ED_KEY, alg="EdDSA")
    header, payload = jws.verify_compact(ED_TOKEN, key.public())
    assert (header, payload) == ({"alg": "EdDSA"}, b"Example of Ed25519 signing")
    # Ed25519 is deterministic (RFC 8032): our signature is the RFC's.
    assert jws.sign_compact(b"Example of Ed25519 signing", key, typ=None) == ED_TOKEN


def test_rfc8037_thumbprint() -> None:
    assert Key.from_jwk(ED_KEY, alg="EdDSA").thumbprint() == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_rfc7638_thumbprint_example() -> None:
    key = Key.from_jwk(
        {
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc"
            "_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW"
            "2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
            "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29",
        }
    )
    assert key.thumbprint() == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_our_tokens_for_the_rfc_keys_round_trip() -> None:
    for jwk, alg in (
        (A1_KEY, "HS256"),
        (A2_KEY, "RS256"),
        (A3_KEY, "ES256"),
        (A4_KEY, "ES512"),
        (ED_KEY, "EdDSA"),
    ):
        key = Key.from_jwk(jwk, alg=alg)
        token = encode(A_CLAIMS, key)
        assert decode(token, key, now=BEFORE_EXP) == A_CLAIMS


# --- RFC 9964: ML-DSA for JOSE ------------------------------------------------------------------------------

RFC9964 = Path(__file__).parent / "vectors" / "rfc9964"
# RFC 9964's examples (its AKP section and its Examples appendix): the all-zero seed's key of each parameter
# set has this kid, its RFC 7638 thumbprint over alg, kty and pub ("AKP Thumbprints"). The AKP section shows
# the ML-DSA-44 JWK with its pub cut to its two ends.
RFC9964_KIDS = {
    "ML-DSA-44": "T4xl70S7MT6Zeq6r9V9fPJGVn76wfnXJ21-gyo0Gu6o",
    "ML-DSA-65": "Suiu29qbfuaBaR4Ats-c6XQBePB_OpAxAwcTR_0KXVM",
    "ML-DSA-87": "tRn1JNIkgMsABVQBlXeDHxAIcclh-2IX0UdDEzPt5XU",
}
RFC9964_PUB_44_ENDS = ("unH59k4Ru", "DZgbTP07e7gEWzw4MFRrndjbDQ")
RFC9964_PRIV = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
RFC9964_PAYLOAD = "It’s a dangerous business, Frodo, going out your door.".encode()


def _rfc9964(alg: str) -> dict[str, Any]:
    vector: dict[str, Any] = json.loads((RFC9964 / f"{alg}.json").read_text(encoding="utf-8"))
    return vector


@pytest.mark.parametrize("alg", sorted(RFC9964_KIDS))
def test_rfc9964_example_key_and_thumbprint(alg: str) -> None:
    jwk = _rfc9964(alg)["jwk"]
    assert (jwk["kid"], jwk["priv"]) == (RFC9964_KIDS[alg], RFC9964_PRIV)
    key = Key.from_jwk(jwk)  # priv is the zero seed, and cryptography derives the same pub from it
    assert key.alg == alg and key.is_private
    assert key.thumbprint() == RFC9964_KIDS[alg]
    assert key.to_jwk(private=True) == jwk  # the RFC's member order, too: kid, kty, alg, pub, priv
    assert key.public().to_jwk() == {name: jwk[name] for name in ("kty", "alg", "pub", "kid")}
    if alg == "ML-DSA-44":
        assert jwk["pub"].startswith(RFC9964_PUB_44_ENDS[0]) and jwk["pub"].endswith(RFC9964_PUB_44_ENDS[1])


@pytest.mark.parametrize("alg", sorted(RFC9964_KIDS))
def test_rfc9964_example_jws_verifies(alg: str) -> None:
    vector = _rfc9964(alg)
    key = Key.from_jwk(vector["jwk"])
    header, payload = jws.verify_compact(vector["jws"], key.public())
    assert header == {"alg": alg, "kid": RFC9964_KIDS[alg]}
    assert payload == RFC9964_PAYLOAD == vector["payload"].encode()
    # the payload is not a JWT, and any change to the signature is refused
    with pytest.raises(Exception) as caught:
        decode(vector["jws"], key)
    assert getattr(caught.value, "code", None) == "malformed"
    signing_input, _, signature = vector["jws"].rpartition(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[len(raw) // 2] ^= 0x80
    assert not jwa.verify(alg, key, signing_input.encode(), bytes(raw))


@pytest.mark.parametrize("alg", sorted(RFC9964_KIDS))
def test_rfc9964_we_sign_what_the_example_verifies(alg: str) -> None:
    # ML-DSA signing is hedged, so our signature differs from the example's; the header and payload do not.
    vector = _rfc9964(alg)
    key = Key.from_jwk(vector["jwk"])
    ours = jws.sign_compact(RFC9964_PAYLOAD, key, typ=None)
    assert ours.rpartition(".")[0] == vector["jws"].rpartition(".")[0]
    assert ours != vector["jws"]
    public = Key.from_jwk({name: value for name, value in vector["jwk"].items() if name != "priv"})
    assert jws.verify_compact(ours, public)[1] == RFC9964_PAYLOAD
