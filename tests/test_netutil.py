"""Tests for urlwarden.core.netutil: the one definition of loopback used by every rule that needs it."""

import pytest

from urlwarden.core.netutil import is_loopback


@pytest.mark.parametrize("host, expected", [
    ("localhost", True), ("127.0.0.1", True), ("127.9.8.7", True), ("::1", True),
    ("0.0.0.0", False), ("::", False), ("192.0.2.1", False), ("localhost.test", False),
    ("[::1]", False),  # callers strip brackets first
    ("LOCALHOST", False),  # callers lower-case names first
    ("", False),
])
def test_is_loopback(host, expected):
    assert is_loopback(host) is expected
