"""Tests of jwtkit.store: the contract on every backend, plus per-backend faults."""
