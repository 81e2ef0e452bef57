"""Shared fixtures: the end-to-end harness (a real origin on loopback and its test PKI)."""

pytest_plugins = ["tests.support.fixtures"]
