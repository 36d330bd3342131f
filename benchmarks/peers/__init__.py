"""Peer apps for the web benchmark: the same GET /private work (PyJWT verify + one Redis GET by sid)."""
