"""The public surface of ``jwtkit``: the exact sorted ``__all__``, the whole error tree, public paths.

``import jwtkit`` is the one path to the token core (implemented in the private ``jwtkit._jose``), and
``jwtkit.jwa`` the one algorithm layer; there is no ``jwtkit.jose``.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

import jwtkit
import jwtkit.jwa
from jwtkit import JWTError
from jwtkit._jose import algorithms, errors
from jwtkit._jose.errors import CODES

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
    layers = {"store", "service", "web", "cli"}  # subpackages appear once imported
    assert public - layers - {"annotations"} == set(EXPECTED)


@pytest.mark.parametrize("name", ["jwtkit.jose", "jwtkit.jose.jwt", "jwtkit.jose.keys", "jwtkit.jose.jwa"])
def test_there_is_no_jwtkit_jose(name: str) -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(name)
    assert not hasattr(jwtkit, "jose")


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def _core_error_classes() -> set[type]:
    defined = {obj for obj in vars(errors).values() if isinstance(obj, type) and issubclass(obj, Exception)}
    # Every subclass of JWTError defined by the core (not by the service or web layers on top).
    return defined | {cls for cls in _subclasses(JWTError) if cls.__module__ in ("jwtkit", errors.__name__)}


def test_every_error_class_is_exported_with_a_known_unique_code() -> None:
    core_errors = _core_error_classes()
    assert JWTError in core_errors and len(core_errors) == 11
    exported = {getattr(jwtkit, name) for name in jwtkit.__all__}
    assert core_errors <= exported
    for cls in core_errors:
        assert getattr(jwtkit, cls.__name__) is cls
    # The root's code is only a default (a bare JWTError reads as "malformed"); each subclass has its own.
    codes = [cls.code for cls in core_errors - {JWTError}]
    assert len(codes) == len(set(codes)) == len(CODES)
    assert set(codes) == CODES
    assert set(errors.__all__) == {cls.__name__ for cls in core_errors} | {"CODES"}


def test_public_objects_show_the_public_module() -> None:
    for name in jwtkit.__all__:
        obj = getattr(jwtkit, name)
        if inspect.ismodule(obj):
            assert obj is jwtkit.jwa, name
            continue
        assert obj.__module__ == "jwtkit", name
        assert obj.__qualname__ == name
    assert repr(jwtkit.Key) == "<class 'jwtkit.Key'>"


def test_jwa_module_both_ways() -> None:
    from jwtkit import jwa

    assert jwa is jwtkit.jwa
    assert callable(jwa.sign) and callable(jwa.verify)


def test_jwa_all_is_exactly_its_public_names_sorted() -> None:
    assert jwtkit.jwa.__all__ == ["ALGORITHMS", "sign", "verify"]
    assert jwtkit.jwa.__all__ == sorted(jwtkit.jwa.__all__)
    public = {name for name in vars(jwtkit.jwa) if not name.startswith("_")}
    assert public - {"annotations"} == set(jwtkit.jwa.__all__)
    for name in ("sign", "verify"):
        assert getattr(jwtkit.jwa, name).__module__ == "jwtkit.jwa", name


def test_one_algorithm_table_and_one_sign_verify() -> None:
    from jwtkit._jose import signing

    assert jwtkit.jwa.ALGORITHMS is algorithms.ALGORITHMS
    assert jwtkit.jwa.sign is signing.sign and jwtkit.jwa.verify is signing.verify
    with pytest.raises(TypeError):
        jwtkit.jwa.ALGORITHMS["none"] = jwtkit.jwa.ALGORITHMS["HS256"]  # type: ignore[index]


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
