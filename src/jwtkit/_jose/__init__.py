"""jwtkit's token core, private: a strict, fast compact JWS/JWT codec over ``hmac`` and ``cryptography``.

Import the public names from :mod:`jwtkit` (and the algorithm layer from :mod:`jwtkit.jwa`); nothing here is a
public path. Modules, one job each: :mod:`.errors` (the error tree), :mod:`.base64url`, :mod:`.strictjson`,
:mod:`.algorithms` (the algorithm table), :mod:`.keys` (Key, KeySet), :mod:`.signing` (sign/verify over a
key, published as :mod:`jwtkit.jwa`), :mod:`.jws` (compact JWS), :mod:`.claims` (registered claims) and
:mod:`.jwt` (encode/decode). It imports nothing else of jwtkit and does no I/O.

Comments here and in ``tests/core`` cite the token rules by number (``R1`` to ``R20``); the rules are written
out in ``docs/token-rules.md``.
"""
