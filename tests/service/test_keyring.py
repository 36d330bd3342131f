"""The key ring: JWT_SECRET, the 0600 key file made on first run, rotation by kid, and the public JWKS."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from jwtkit import Key, decode, encode
from jwtkit.service import KeyRing, ServiceConfigError

SECRET = b"0123456789abcdef0123456789abcdef"


def test_from_secret() -> None:
    ring = KeyRing.from_secret(SECRET)
    assert ring.active.alg == "HS256"
    assert ring.active.kid == Key.from_secret(SECRET).thumbprint()
    assert ring.verify_only == ()
    assert ring.jwks() == {"keys": []}  # HMAC secrets are never published
    token = encode({"sub": "u", "exp": 4_000_000_000}, ring.active)
    assert decode(token, ring.keyset)["sub"] == "u"
    assert SECRET.decode() not in repr(ring)


@pytest.mark.parametrize("secret", [b"", b"secret", b"x" * 31])
def test_short_secrets_are_refused(secret: bytes) -> None:
    with pytest.raises(ServiceConfigError, match="at least 32 bytes") as info:
        KeyRing.from_secret(secret)
    assert info.value.code == "service_config"


def test_load_or_create_makes_a_0600_file_once(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "jwtkit.key"
    ring = KeyRing.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    [jwk] = document["keys"]
    assert jwk["kty"] == "oct"
    assert jwk["alg"] == "HS256"
    assert jwk["kid"] == ring.active.kid == ring.active.thumbprint()
    assert len(Key.from_jwk(jwk).to_jwk(private=True)["k"]) == 43  # 32 random bytes, base64url
    again = KeyRing.load_or_create(path)
    assert again.active.kid == ring.active.kid
    token = encode({"sub": "u", "exp": 4_000_000_000}, ring.active)
    assert decode(token, again.keyset)["sub"] == "u"


def test_each_new_key_file_has_its_own_key(tmp_path: Path) -> None:
    first = KeyRing.load_or_create(tmp_path / "a.key")
    second = KeyRing.load_or_create(tmp_path / "b.key")
    assert first.active.kid != second.active.kid


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "jwtkit.key"
    KeyRing.load_or_create(path)
    os.chmod(path, mode)
    with pytest.raises(ServiceConfigError, match="chmod 600"):
        KeyRing.load_or_create(path)


@pytest.mark.parametrize(("content", "match"), [
    ("", "not JSON"),
    ("{", "not JSON"),
    ("[]", "non-empty"),
    ('{"keys": []}', "non-empty"),
    ('{"keys": [1]}', "not an object"),
    ('{"keys": [{"kty": "oct", "k": "c2hvcnQ", "alg": "HS256"}]}', "refused"),
])
def test_bad_key_files_are_refused_clearly(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "jwtkit.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content.encode())
    os.close(fd)
    with pytest.raises(ServiceConfigError, match=match):
        KeyRing.load(path)


def test_missing_key_file_on_load(tmp_path: Path) -> None:
    with pytest.raises(ServiceConfigError, match="does not exist"):
        KeyRing.load(tmp_path / "nope.key")


def test_rotate_keeps_old_keys_verifying_until_retired(tmp_path: Path) -> None:
    path = tmp_path / "jwtkit.key"
    first = KeyRing.load_or_create(path)
    old_token = encode({"sub": "u", "exp": 4_000_000_000}, first.active)
    second = KeyRing.rotate(path, retire_after=100.0, now=1000.0)
    assert second.active.kid != first.active.kid
    assert [key.kid for key in second.verify_only] == [first.active.kid]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = KeyRing.load(path, now=1000.0)  # the key file is a schedule: the ring as of then
    assert loaded.active.kid == second.active.kid
    assert decode(old_token, loaded.keyset)["sub"] == "u"  # verify-only key still verifies
    new_token = encode({"sub": "v", "exp": 4_000_000_000}, loaded.active)
    assert decode(new_token, loaded.keyset)["sub"] == "v"
    retired = {k["kid"]: k.get("retired_at") for k in json.loads(path.read_text())["keys"]}
    assert retired == {second.active.kid: None, first.active.kid: 1000.0}
    # a later rotation within the window keeps both older keys, newest retired first
    third = KeyRing.rotate(path, retire_after=100.0, now=1050.0)
    assert [key.kid for key in third.verify_only] == [second.active.kid, first.active.kid]
    # past the window the first key is dropped: no unexpired token can carry its kid
    fourth = KeyRing.rotate(path, retire_after=100.0, now=1101.0)
    assert [key.kid for key in fourth.verify_only] == [third.active.kid, second.active.kid]
    assert first.active.kid not in path.read_text()


def test_rotate_to_an_asymmetric_key_publishes_its_public_half(tmp_path: Path) -> None:
    path = tmp_path / "jwtkit.key"
    KeyRing.load_or_create(path)
    ring = KeyRing.rotate(path, "ES256")
    assert ring.active.alg == "ES256"
    [public] = ring.jwks()["keys"]
    assert public["kid"] == ring.active.kid
    assert public["kty"] == "EC"
    assert "d" not in public
    assert ring.verify_only[0].alg == "HS256"  # the old HMAC key verifies but is not published


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256", "ML-DSA-65"])
def test_load_or_create_with_asymmetric_keys(tmp_path: Path, alg: str) -> None:
    path = tmp_path / f"{alg}.key"
    ring = KeyRing.load_or_create(path, alg)
    assert ring.active.alg == alg
    again = KeyRing.load(path)
    token = encode({"sub": "u", "exp": 4_000_000_000}, ring.active)
    assert decode(token, again.keyset)["sub"] == "u"
    [public] = again.jwks()["keys"]
    assert not any(member in public for member in ("d", "p", "q", "dp", "dq", "qi", "priv"))
    assert public["kid"] == ring.active.kid == ring.active.thumbprint()


def test_rotate_from_ml_dsa_44_to_ml_dsa_87_keeps_both_bindings(tmp_path: Path) -> None:
    # RFC 9964: each ML-DSA key is bound to its parameter set; a ring holds both while the old one retires.
    path = tmp_path / "jwtkit.key"
    first = KeyRing.load_or_create(path, "ML-DSA-44")
    old_token = encode({"sub": "u", "exp": 4_000_000_000}, first.active)
    ring = KeyRing.rotate(path, "ML-DSA-87")
    assert (ring.active.alg, ring.verify_only[0].alg) == ("ML-DSA-87", "ML-DSA-44")
    assert {(key["alg"], key["kty"]) for key in ring.jwks()["keys"]} == {("ML-DSA-87", "AKP"),
                                                                       ("ML-DSA-44", "AKP")}
    assert decode(old_token, ring.keyset)["sub"] == "u"
    assert decode(encode({"sub": "v", "exp": 4_000_000_000}, ring.active), ring.keyset)["sub"] == "v"


def test_active_key_must_sign() -> None:
    public = Key.generate("ES256").public()
    with pytest.raises(ServiceConfigError):
        KeyRing(public)


def test_duplicate_kids_refused() -> None:
    key = Key.from_secret(SECRET, kid="k")
    with pytest.raises(ServiceConfigError):
        KeyRing(key, [Key.from_secret(b"z" * 32, kid="k")])


def test_concurrent_first_runs_agree_on_one_key(tmp_path: Path) -> None:
    """Several workers starting at once: the file is created once (link, never overwrite), all load it."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "jwtkit.key"
    with ThreadPoolExecutor(max_workers=8) as pool:
        rings = list(pool.map(lambda _: KeyRing.load_or_create(path), range(16)))
    assert len({ring.active.kid for ring in rings}) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["jwtkit.key"]  # no temporary files left


def test_repr_never_shows_key_material(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path / "jwtkit.key")
    secret = json.loads((tmp_path / "jwtkit.key").read_text())["keys"][0]["k"]
    assert secret not in repr(ring)
    assert ring.active.kid in repr(ring)
