"""Tests for jwtkit.jose, the token core."""
