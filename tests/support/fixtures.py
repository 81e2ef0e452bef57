"""pytest fixtures over the harness.

Use them from a test module (or a conftest.py) by importing them by name::

    from tests.support.fixtures import test_pki, origin, fresh_origin  # noqa: F401

    @pytest.mark.e2e
    def test_blocked(fresh_origin, tmp_path):
        port = free_port()
        with ProxyProcess([...], port, hosts={"listed.test": "127.0.0.1"}, workdir=tmp_path):
            r = curl(fresh_origin.url("listed.test", "/x"), proxy=port)
        fresh_origin.wait_idle()
        assert fresh_origin.connections == []      # the origin was never contacted

(or list ``"tests.support.fixtures"`` in the top conftest's ``pytest_plugins``).

- `test_pki` (session): `certs.TestPKI` for DEFAULT_PKI_NAMES, in a session temp dir.
- `origin` (module): one running `origin.Origin` per test module.
- `fresh_origin` (function): that same origin, `reset()` before the test, so `connections` and
  `requests` hold only what this test caused.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .certs import TestPKI, make_test_pki
from .origin import Origin

__all__ = ["test_pki", "origin", "fresh_origin", "DEFAULT_PKI_NAMES"]

# Exact names first: verifiers do not let "*.test" match "listed.test" (see certs.py).
DEFAULT_PKI_NAMES = (
    "origin.test", "listed.test", "allowed.test", "blocked.test", "other.test",
    "www.listed.test", "sub.listed.test", "*.listed.test", "*.allowed.test", "*.origin.test",
    "origin.example", "listed.example", "*.test", "*.example",
)


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_test_pki(tmp_path_factory.mktemp("pki"), list(DEFAULT_PKI_NAMES))


@pytest.fixture(scope="module")
def origin(test_pki: TestPKI) -> Iterator[Origin]:
    with Origin(test_pki) as running:
        yield running


@pytest.fixture
def fresh_origin(origin: Origin) -> Origin:
    origin.reset()
    return origin
