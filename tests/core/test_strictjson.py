"""Strict JSON (R3, R11) and canonical base64url (R2), unit by unit."""

from __future__ import annotations

import pytest

from jwtkit._jose import base64url, strictjson


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":1,"a":2}',
        b'{"a":{"b":1,"b":1}}',
        b'{"a":[{"x":1,"x":1}]}',
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b'{"a":-Infinity}',
        b'{"a":1e309}',
        b'{"a":"\\udc00"}',
        b'{"a":"\\ud800x"}',
        b"\xef\xbb\xbf{}",
        b'{"a":"\xc3"}',
        b"[]",
        b'"s"',
        b"1",
        b"null",
        b"",
        b"{} {}",
        b"{}x",
        b"{'a':1}",
        b'{"a":1,}',
        b'{"a":' + b"[" * 17 + b"]" * 17 + b"}",
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"a":' + b"9" * 5000 + b"}",
        # Many brackets and escaped quotes: once quadratic in a string-skipping regex, now a linear parse.
        b'{"a":' + b"[" * 20 + b'"' + b'\\"' * 3000,
        b"[" * 20 + b'"\\' * 3000,
        '{"a":1}'.encode("utf-16"),
        '{"a":1}'.encode("utf-32"),
    ],
)
def test_refused(text: bytes) -> None:
    with pytest.raises(ValueError):
        strictjson.loads_object(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"{}", {}),
        (b' { "a" : [ 1 , 2.5 , true , null ] }\r\n', {"a": [1, 2.5, True, None]}),
        (b'{"a":"\\ud83d\\ude00"}', {"a": "\U0001f600"}),
        ('{"é":"ü"}'.encode(), {"é": "ü"}),
        (b'{"a":' + b"[" * 15 + b"]" * 15 + b"}", {"a": [[[[[[[[[[[[[[[]]]]]]]]]]]]]]]}),
        (b'{"s":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{{{{{{{{"}', {"s": "[" * 36 + "{" * 8}),
        (b'{"a":1,"A":2}', {"a": 1, "A": 2}),
        (b'{"big":123456789012345678901234567890}', {"big": 123456789012345678901234567890}),
    ],
)
def test_accepted(text: bytes, value: object) -> None:
    assert strictjson.loads_object(text) == value


@pytest.mark.parametrize("segment", [b"", b"AA", b"AAA", b"AAAA", b"-_-_", b"AQ", b"Ag", b"AAE"])
def test_canonical_segments(segment: bytes) -> None:
    assert base64url.is_canonical(segment)
    assert base64url.encode(base64url.decode(segment)) == segment


@pytest.mark.parametrize(
    "segment", [b"A", b"AB", b"AAB", b"AA==", b"AA=", b"+/", b"A A", b"AA\n", b"\xc3\xa9A", b"AAAAA"]
)
def test_non_canonical_segments(segment: bytes) -> None:
    assert not base64url.is_canonical(segment)
    with pytest.raises(ValueError):
        base64url.decode(segment)


def test_decode_str_and_non_ascii() -> None:
    assert base64url.decode("AQ") == b"\x01"
    with pytest.raises(ValueError):
        base64url.decode("é")


@pytest.mark.parametrize("fast", [True, False], ids=["pybase64", "stdlib"])
def test_decoders_agree(monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    if not fast:
        monkeypatch.setattr(base64url, "_fast_b64decode", None)
        monkeypatch.setattr(base64url, "_fast_b64encode", None)
    for size in range(7):
        assert base64url.decode_canonical(base64url.encode(bytes(range(250, 250 + size)))) == bytes(
            range(250, 250 + size)
        )
    assert base64url.encode(b"\xfb\xff") == b"-_8"
    assert base64url.decode_padded(b"-_-_AQ==") == b"\xfb\xff\xbf\x01"
    for bad in (b"AQ= ", b" AQ=", b"A\nQ=", b"AQ\x00=", b"\xc3\xa9AA", b"AQ", b"AQ=A", b"AQ==AQ=="):
        with pytest.raises(ValueError):
            base64url.decode_padded(bad)
