"""The public surface of ``jwtkit``: the exact sorted ``__all__``, the whole error tree, public paths."""

from __future__ import annotations

import inspect

import jwtkit
from jwtkit import JWTError
from jwtkit.jose.errors import CODES

EXPECTED = [
    "BadSignature",
    "DisallowedAlgorithm",
    "ExpiredToken",
    "FutureIssuedToken",
    "InvalidClaim",
    "InvalidHeader",
    "JWTError",
    "Key",
    "KeySet",
    "MalformedToken",
    "NotYetValidToken",
    "TokenTooLarge",
    "UnusableKey",
    "decode",
    "decode_unverified",
    "encode",
    "jwa",
]


def test_all_is_exactly_the_public_names_sorted() -> None:
    assert jwtkit.__all__ == EXPECTED
    assert jwtkit.__all__ == sorted(jwtkit.__all__)
    public = {name for name in vars(jwtkit) if not name.startswith("_")}
    layers = {"jose", "store", "service", "web", "cli"}  # subpackages appear once imported
    assert public - layers - {"annotations"} == set(EXPECTED)


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def test_every_error_class_is_exported_with_a_known_unique_code() -> None:
    errors = {cls for cls in _subclasses(JWTError) if cls.__module__ in ("jwtkit", "jwtkit.jose.errors")}
    exported = {getattr(jwtkit, name) for name in jwtkit.__all__}
    assert errors <= exported
    codes = [cls.code for cls in errors]
    assert len(codes) == len(set(codes)) == len(CODES)
    assert set(codes) == CODES


def test_public_objects_show_the_public_module() -> None:
    for name in jwtkit.__all__:
        obj = getattr(jwtkit, name)
        if inspect.ismodule(obj):
            continue
        assert obj.__module__ == "jwtkit", name


def test_jwa_module_both_ways() -> None:
    import jwtkit.jwa
    from jwtkit import jwa

    assert jwa is jwtkit.jwa
    assert callable(jwa.sign) and callable(jwa.verify)


def test_signatures_are_the_fixed_api() -> None:
    from jwtkit import Key, KeySet, decode, decode_unverified, encode

    assert str(inspect.signature(encode)) == (
        "(claims: 'Mapping[str, Any]', key: 'Key', *, headers: 'Mapping[str, Any] | None' = None, "
        "typ: 'str | None' = 'JWT') -> 'str'"
    )
    decode_parameters = inspect.signature(decode).parameters
    assert {name: p.default for name, p in decode_parameters.items() if p.kind is p.KEYWORD_ONLY} == {
        "algorithms": None,
        "issuer": None,
        "audience": None,
        "subject": None,
        "leeway": 0,
        "require": ("exp",),
        "typ": None,
        "now": None,
        "max_length": 8192,
    }
    assert list(inspect.signature(decode_unverified).parameters) == ["token"]
    assert list(inspect.signature(Key.from_secret).parameters) == ["secret", "alg", "kid"]
    assert inspect.signature(Key.from_secret).parameters["alg"].default == "HS256"
    assert list(inspect.signature(Key.from_pem).parameters) == ["data", "alg", "kid", "password"]
    assert list(inspect.signature(Key.from_jwk).parameters) == ["jwk", "alg"]
    assert list(inspect.signature(Key.generate).parameters) == ["alg", "kid"]
    assert list(inspect.signature(KeySet.to_jwks).parameters) == ["self", "private"]
    for name in ("alg", "kid", "is_private"):
        assert isinstance(inspect.getattr_static(Key, name), property)


def test_public_docstring_examples_run() -> None:
    import doctest

    from jwtkit import Key, KeySet, decode, decode_unverified, encode, jwa

    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = []
    for obj in (Key, KeySet, encode, decode, decode_unverified, jwa.sign, jwa.verify, jwtkit.jwa):
        tests += finder.find(obj, globs={"Key": Key})
    assert len(tests) >= 8
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
