"""DPoP (RFC 9449) in the service: every check of §4.3 on hostile proofs, proofs made by joserfc, stateless
nonces, and tokens bound at login and refresh that a thief without the key cannot use."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from jwtkit import Key, decode_unverified
from jwtkit.service import (
    AuthService,
    DPoPNonces,
    DPoPRequest,
    DPoPVerifier,
    InvalidDPoPProof,
    InvalidToken,
    UseDPoPNonce,
    User,
    make_dpop_proof,
    read_dpop_proof,
)
from jwtkit.service._dpop import access_token_hash, normalize_htu
from jwtkit.store import open_store

from .conftest import PASSWORD, FakeClock, ServiceFactory

URL = "https://api.example/private"
NOW = 1_800_000_000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], key: Key) -> str:
    """A proof with any header and claims, really signed by ``key``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(key._signer(signing_input.encode()))}"  # type: ignore[misc]


def claims_of(**changes: Any) -> dict[str, Any]:
    return {"jti": "j1", "htm": "GET", "htu": URL, "iat": int(NOW), **changes}


def header_of(key: Key, **changes: Any) -> dict[str, Any]:
    return {"typ": "dpop+jwt", "alg": key.alg, "jwk": key.public().to_jwk(), **changes}


def read(proof: str | list[str], **options: Any) -> Any:
    options = {"htm": "GET", "htu": URL, "now": NOW, **options}
    return read_dpop_proof([proof] if isinstance(proof, str) else proof, **options)


@pytest.fixture(scope="module")
def client_key() -> Key:
    return Key.generate("ES256")


# the stateless checks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "EdDSA", "PS256", "RS256", "ML-DSA-44",
                                 "ML-DSA-65"])
def test_a_proof_round_trips_for_every_asymmetric_algorithm(alg: str) -> None:
    key = Key.generate(alg, kid="k" * 43)  # a thumbprint-long kid, in the jwk and the header
    url = "https://api.example/" + "path/" * 20
    proof = make_dpop_proof(key, htm="POST", htu=url + "?x=1#f", access_token="t" * 900, now=NOW)
    read_back = read(proof, htm="POST", htu=url, access_token="t" * 900)
    assert read_back.jkt == key.thumbprint() and read_back.key.alg == alg


def test_the_access_token_hash_is_checked(client_key: Key) -> None:
    proof = make_dpop_proof(client_key, htm="GET", htu=URL, access_token="the-token", now=NOW)
    assert read(proof, access_token="the-token").jti
    # RFC 9449 §4.2: base64url SHA-256 of the token's ASCII
    assert access_token_hash("the-token") == b64(hashlib.sha256(b"the-token").digest())
    with pytest.raises(InvalidDPoPProof) as info:
        read(proof, access_token="another-token")
    assert info.value.reason == "ath"
    without = make_dpop_proof(client_key, htm="GET", htu=URL, now=NOW)
    with pytest.raises(InvalidDPoPProof, match="another access token"):
        read(without, access_token="the-token")


HOSTILE: list[tuple[str, Any, str]] = [
    # (what, how the proof is made from the key, the reason)
    ("another method", lambda k: forged(header_of(k), claims_of(htm="POST"), k), "htm"),
    ("another URL", lambda k: forged(header_of(k), claims_of(htu="https://api.example/other"), k), "htu"),
    ("another host", lambda k: forged(header_of(k), claims_of(htu="https://evil.example/private"), k), "htu"),
    ("http for https", lambda k: forged(header_of(k), claims_of(htu="http://api.example/private"), k), "htu"),
    ("htu not a URL", lambda k: forged(header_of(k), claims_of(htu="/private"), k), "htu"),
    ("stale iat", lambda k: forged(header_of(k), claims_of(iat=int(NOW) - 61), k), "iat"),
    ("iat ahead", lambda k: forged(header_of(k), claims_of(iat=int(NOW) + 6), k), "iat"),
    ("iat a string", lambda k: forged(header_of(k), claims_of(iat="now"), k), "claim"),
    ("no jti", lambda k: forged(header_of(k), {"htm": "GET", "htu": URL, "iat": int(NOW)}, k), "claim"),
    ("jti too long", lambda k: forged(header_of(k), claims_of(jti="j" * 257), k), "jti"),
    ("jti a number", lambda k: forged(header_of(k), claims_of(jti=7), k), "claim"),  # the core's claim rules
    ("typ JWT", lambda k: forged(header_of(k, typ="JWT"), claims_of(), k), "typ"),
    ("no typ", lambda k: forged({"alg": k.alg, "jwk": k.public().to_jwk()}, claims_of(), k), "typ"),
    ("alg none", lambda k: forged(header_of(k, alg="none"), claims_of(), k).rsplit(".", 1)[0] + ".",
     "malformed"),
    ("no jwk", lambda k: forged({"typ": "dpop+jwt", "alg": k.alg}, claims_of(), k), "jwk"),
    ("jwk a string", lambda k: forged(header_of(k, jwk="key"), claims_of(), k), "jwk"),
    ("private key in jwk", lambda k: forged(header_of(k, jwk=k.to_jwk(private=True)), claims_of(), k),
     "private_jwk"),
    ("signed by another key", lambda k: forged(header_of(k), claims_of(), Key.generate("ES256")),
     "signature"),
    ("jwk of another alg", lambda k: forged(header_of(k, jwk=Key.generate("ES384").public().to_jwk()),
                                            claims_of(), k), "jwk"),
    ("a signature of the wrong length", lambda k: make_dpop_proof(k, htm="GET", htu=URL, now=NOW).rsplit(
        ".", 1)[0] + "." + b64(bytes(63)), "signature"),
    ("nonce a number", lambda k: forged(header_of(k), claims_of(nonce=5), k), "nonce"),
    ("not a JWT", lambda k: "garbage", "malformed"),
    ("five segments", lambda k: "a.b.c.d.e", "malformed"),
    ("too large", lambda k: "a" * 10241, "too_large"),
    ("ML-DSA-87, too large for a header", lambda k: make_dpop_proof(Key.generate("ML-DSA-87"), htm="GET",
                                                                    htu=URL, now=NOW), "too_large"),
]


@pytest.mark.parametrize(("what", "make", "reason"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_proofs_are_refused_with_their_reason(client_key: Key, what: str, make: Any,
                                                      reason: str) -> None:
    with pytest.raises(InvalidDPoPProof) as info:
        read(make(client_key))
    assert (info.value.code, info.value.reason) == ("invalid_dpop_proof", reason)


def test_a_symmetric_alg_is_refused_even_with_a_valid_mac() -> None:
    secret = Key.generate("HS256")
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": secret.to_jwk(private=True)}
    with pytest.raises(InvalidDPoPProof) as info:
        read(forged(header, claims_of(), secret))
    assert info.value.reason == "algorithm"
    with pytest.raises(ValueError, match="asymmetric"):
        make_dpop_proof(secret, htm="GET", htu=URL)
    with pytest.raises(ValueError, match="asymmetric"):
        DPoPVerifier(algorithms=["ES256", "HS256"])


def test_an_alg_outside_the_allowed_list_is_refused(client_key: Key) -> None:
    proof = make_dpop_proof(client_key, htm="GET", htu=URL, now=NOW)
    with pytest.raises(InvalidDPoPProof) as info:
        read(proof, algorithms=("EdDSA",))
    assert info.value.reason == "algorithm"


def test_exactly_one_proof_header(client_key: Key) -> None:
    proof = make_dpop_proof(client_key, htm="GET", htu=URL, now=NOW)
    for proofs in ([], [proof, proof]):
        with pytest.raises(InvalidDPoPProof) as info:
            read(proofs)
        assert info.value.reason == "count"


@pytest.mark.parametrize(("one", "other"), [
    ("https://API.Example/private", URL),
    ("https://api.example:443/private", URL),
    ("https://api.example/private?query=1#fragment", URL),
    ("https://api.example/%7Ealice", "https://api.example/~alice"),
    ("https://api.example/a%2fb", "https://api.example/a%2Fb"),
    ("http://api.example:80", "http://api.example/"),
    ("http://[::1]:8080/x", "http://[::1]:8080/x"),
])
def test_htu_is_compared_after_normalisation(one: str, other: str) -> None:
    assert normalize_htu(one) == normalize_htu(other)


@pytest.mark.parametrize(("one", "other"), [
    ("https://api.example/a%2Fb", "https://api.example/a/b"),  # an escaped slash is not a slash
    ("https://api.example:8443/private", URL),
    ("https://api.example/Private", URL),
    ("http://api.example/private", URL),
])
def test_htu_normalisation_keeps_what_differs(one: str, other: str) -> None:
    assert normalize_htu(one) != normalize_htu(other)


@given(st.text(max_size=60))
def test_property_normalize_htu_is_idempotent_or_refuses(text: str) -> None:
    try:
        once = normalize_htu("https://api.example/" + text)
    except ValueError:
        return
    assert normalize_htu(once) == once


# proofs made by another implementation ---------------------------------------------------------------------


@pytest.mark.parametrize(("key", "alg"), [
    (ECKey.generate_key("P-256"), "ES256"),
    (OKPKey.generate_key("Ed25519"), "Ed25519"),
    (RSAKey.generate_key(2048), "PS256"),
])
def test_proofs_made_by_joserfc_are_accepted_and_thumbprints_agree(key: Any, alg: str) -> None:
    claims = {"jti": "from-joserfc", "htm": "POST", "htu": "https://api.example/auth",
              "iat": int(time.time()), "ath": access_token_hash("tok")}
    header = {"alg": alg, "typ": "dpop+jwt", "jwk": key.as_dict(private=False)}
    proof = joserfc_jwt.encode(header, claims, key, algorithms=[alg])
    read_back = read_dpop_proof([proof], htm="POST", htu="https://api.example/auth", access_token="tok")
    assert read_back.jkt == key.thumbprint()


# nonces -----------------------------------------------------------------------------------------------------


def test_nonces_live_one_to_two_steps_and_are_shared_by_nodes_with_the_secret() -> None:
    clock = FakeClock(NOW - NOW % 300)
    node_a, node_b = (DPoPNonces(b"s" * 32, clock=clock) for _ in range(2))
    other = DPoPNonces(b"t" * 32, clock=clock)
    nonce = node_a.current()
    assert node_b.accepts(nonce) and not other.accepts(nonce)
    clock.advance(299)
    assert node_b.accepts(nonce) and node_b.current() == nonce
    clock.advance(300)  # the next step: still accepted, a new one handed out
    assert node_b.accepts(nonce) and node_b.current() != nonce
    clock.advance(300)
    assert not node_b.accepts(nonce)
    assert not node_b.accepts(None) and not node_b.accepts("") and not node_b.accepts("x" * 500)
    with pytest.raises(ValueError):
        DPoPNonces(b"short")


async def test_the_verifier_asks_for_its_nonce_then_accepts_it(client_key: Key) -> None:
    clock = FakeClock(NOW)
    verifier = DPoPVerifier(nonces=DPoPNonces(b"n" * 32, clock=clock), clock=clock)
    proof = make_dpop_proof(client_key, htm="GET", htu=URL, now=NOW)
    with pytest.raises(UseDPoPNonce) as info:
        await verifier.verify([proof], htm="GET", htu=URL)
    assert info.value.code == "use_dpop_nonce" and info.value.nonce == verifier.nonce()
    stale = make_dpop_proof(client_key, htm="GET", htu=URL, now=NOW, nonce="made-up")
    with pytest.raises(UseDPoPNonce):
        await verifier.verify([stale], htm="GET", htu=URL)
    good = make_dpop_proof(client_key, htm="GET", htu=URL, now=NOW, nonce=info.value.nonce)
    assert (await verifier.verify([good], htm="GET", htu=URL)).nonce == info.value.nonce


# the replay cache -------------------------------------------------------------------------------------------


async def test_a_proof_is_accepted_once_per_store_shared_by_nodes(client_key: Key, tmp_path: Any) -> None:
    clock = FakeClock(NOW)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    async with open_store(url, clock=clock) as first, open_store(url, clock=clock) as second:
        node_a, node_b = DPoPVerifier(first, clock=clock), DPoPVerifier(second, clock=clock)
        proof = make_dpop_proof(client_key, htm="GET", htu=URL, now=NOW)
        await node_a.verify([proof], htm="GET", htu=URL)
        for node in (node_b, node_a):
            with pytest.raises(InvalidDPoPProof) as info:
                await node.verify([proof], htm="GET", htu=URL)
            assert info.value.reason == "replay"
        # the same jti from another key is another proof
        other = make_dpop_proof(Key.generate("ES256"), htm="GET", htu=URL, now=NOW, jti=decode_unverified(
            proof)[1]["jti"])
        await node_b.verify([other], htm="GET", htu=URL)


async def test_a_refused_proof_spends_nothing(client_key: Key) -> None:
    clock = FakeClock(NOW)
    verifier = DPoPVerifier(clock=clock)
    proof = make_dpop_proof(client_key, htm="GET", htu=URL, now=NOW)
    with pytest.raises(InvalidDPoPProof) as info:
        await verifier.verify([proof], htm="GET", htu=URL, jkt="another-key's-thumbprint")
    assert info.value.reason == "jkt"
    await verifier.verify([proof], htm="GET", htu=URL, jkt=client_key.thumbprint())


# bound tokens through the service --------------------------------------------------------------------------


_clock: list[FakeClock] = []


@pytest.fixture(autouse=True)
def _proof_clock(clock: FakeClock) -> Any:
    """The service's clock, for the proofs made below (their iat must be inside its window)."""
    _clock.append(clock)
    yield
    _clock.pop()


def request(key: Key, method: str, url: str, token: str | None = None, **options: Any) -> DPoPRequest:
    proof = make_dpop_proof(key, htm=method, htu=url, access_token=token, now=_clock[-1](), **options)
    return DPoPRequest(proofs=(proof,), htm=method, htu=url)


async def test_login_binds_the_tokens_and_only_the_key_holder_can_use_them(
    service: AuthService, alice: User, client_key: Key
) -> None:
    pair = await service.login("alice", PASSWORD, dpop=request(client_key, "POST", "https://app/auth"))
    assert pair.token_type == "DPoP"
    for token in (pair.access_token, pair.refresh_token):
        assert decode_unverified(token)[1]["cnf"] == {"jkt": client_key.thumbprint()}
    principal = await service.authenticate(
        pair.access_token, dpop=request(client_key, "GET", URL, pair.access_token))
    assert principal.user_id == alice.id
    # the thief has the token, not the key
    with pytest.raises(InvalidDPoPProof) as bearer:
        await service.authenticate(pair.access_token)
    assert bearer.value.reason == "bound"
    thief = Key.generate("ES256")
    with pytest.raises(InvalidDPoPProof) as wrong_key:
        await service.authenticate(pair.access_token, dpop=request(thief, "GET", URL, pair.access_token))
    assert wrong_key.value.reason == "jkt"
    replayed = request(client_key, "GET", URL, pair.access_token)
    await service.authenticate(pair.access_token, dpop=replayed)
    with pytest.raises(InvalidDPoPProof) as replay:
        await service.authenticate(pair.access_token, dpop=replayed)
    assert replay.value.reason == "replay"
    elsewhere = DPoPRequest(proofs=request(client_key, "GET", URL, pair.access_token).proofs, htm="GET",
                            htu="https://api.example/sessions")
    with pytest.raises(InvalidDPoPProof) as other_url:
        await service.authenticate(pair.access_token, dpop=elsewhere)
    assert other_url.value.reason == "htu"
    other_token = await service.login("alice", PASSWORD, dpop=request(client_key, "POST", "https://app/auth"))
    with pytest.raises(InvalidDPoPProof) as ath:  # a proof made for another token of the same key
        await service.authenticate(pair.access_token, dpop=request(client_key, "GET", URL,
                                                                     other_token.access_token))
    assert ath.value.reason == "ath"


async def test_a_bound_refresh_token_rotates_only_with_its_key(service: AuthService, alice: User,
                                                               client_key: Key) -> None:
    pair = await service.login("alice", PASSWORD, dpop=request(client_key, "POST", "https://app/auth"))
    with pytest.raises(InvalidDPoPProof) as missing:
        await service.refresh(pair.refresh_token)
    assert missing.value.reason == "bound"
    with pytest.raises(InvalidDPoPProof) as thief:
        await service.refresh(pair.refresh_token, dpop=request(Key.generate("EdDSA"), "POST", "https://app/r"))
    assert thief.value.reason == "jkt"
    # the refused attempts spent nothing: the owner rotates as usual, and stays bound
    rotated = await service.refresh(pair.refresh_token, dpop=request(client_key, "POST", "https://app/r"))
    assert rotated.token_type == "DPoP"
    assert decode_unverified(rotated.access_token)[1]["cnf"] == {"jkt": client_key.thumbprint()}


async def test_bearer_clients_keep_bearer_tokens_and_cannot_claim_dpop(service: AuthService, alice: User,
                                                                       client_key: Key) -> None:
    pair = await service.login("alice", PASSWORD)
    assert pair.token_type == "Bearer" and "cnf" not in decode_unverified(pair.access_token)[1]
    assert (await service.authenticate(pair.access_token)).user_id == alice.id
    with pytest.raises(InvalidToken) as info:
        await service.authenticate(pair.access_token, dpop=request(client_key, "GET", URL, pair.access_token))
    assert info.value.reason == "not_bound"
    # a proof at refresh binds the session from then on
    upgraded = await service.refresh(pair.refresh_token, dpop=request(client_key, "POST", "https://app/r"))
    assert upgraded.token_type == "DPoP"
    with pytest.raises(InvalidDPoPProof):
        await service.refresh(upgraded.refresh_token)


async def test_require_dpop_refuses_bearer_logins_and_tokens(make_service: ServiceFactory,
                                                             client_key: Key) -> None:
    async with make_service() as plain:
        await plain.register("alice", PASSWORD)
        bearer = await plain.login("alice", PASSWORD)
    strict = make_service(require_dpop=True)
    async with strict:
        if await strict.find_user("alice") is None:  # a memory store's users are its own
            await strict.register("alice", PASSWORD)
        with pytest.raises(InvalidDPoPProof) as info:
            await strict.login("alice", PASSWORD)
        assert info.value.reason == "required"
        with pytest.raises(InvalidDPoPProof):
            await strict.authenticate(bearer.access_token)
        pair = await strict.login("alice", PASSWORD, dpop=request(client_key, "POST", "https://app/auth"))
        assert pair.token_type == "DPoP"


async def test_a_refused_login_proof_costs_no_password_hash(service: AuthService, alice: User,
                                                            client_key: Key, hasher: Any) -> None:
    before = hasher.verify_calls
    bad = DPoPRequest(proofs=("garbage",), htm="POST", htu="https://app/auth")
    with pytest.raises(InvalidDPoPProof):
        await service.login("alice", PASSWORD, dpop=bad)
    assert hasher.verify_calls == before
