"""Tests for the token core: `jwtkit` itself (implemented in jwtkit._jose) and `jwtkit.jwa`."""
