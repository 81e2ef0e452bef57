"""urlwarden.runtime.protocols: which carriers may reach a host, by host status (the table in its docstring)."""

from __future__ import annotations

import pytest

from urlwarden.core.matcher import HostStatus
from urlwarden.runtime.protocols import Carrier, allowed_carriers, may_reach, may_upgrade

C, P, U, W = HostStatus.CLEAN, HostStatus.PATHS, HostStatus.UNKNOWN, HostStatus.WHOLE

# (status, carrier, allowed, allowed with uninspected: pass)
TABLE = [
    (C, Carrier.HTTP, True, True), (C, Carrier.WEBSOCKET, True, True), (C, Carrier.TLS_PASSTHROUGH, True, True),
    (C, Carrier.TCP, True, True), (C, Carrier.UPGRADE, True, True), (C, Carrier.UDP, True, True),
    (P, Carrier.HTTP, True, True), (P, Carrier.WEBSOCKET, True, True), (P, Carrier.TLS_PASSTHROUGH, False, True),
    (P, Carrier.TCP, False, False), (P, Carrier.UPGRADE, False, False), (P, Carrier.UDP, False, False),
    (U, Carrier.HTTP, True, True), (U, Carrier.WEBSOCKET, True, True), (U, Carrier.TLS_PASSTHROUGH, False, True),
    (U, Carrier.TCP, False, False), (U, Carrier.UPGRADE, False, False), (U, Carrier.UDP, False, False),
    (W, Carrier.HTTP, False, False), (W, Carrier.WEBSOCKET, False, False), (W, Carrier.TLS_PASSTHROUGH, False, False),
    (W, Carrier.TCP, False, False), (W, Carrier.UPGRADE, False, False), (W, Carrier.UDP, False, False),
]


@pytest.mark.parametrize(("status", "carrier", "allowed", "with_pass"), TABLE)
def test_may_reach(status, carrier, allowed, with_pass):
    assert may_reach(status, carrier) is allowed
    assert may_reach(status, carrier, uninspected_pass=True) is with_pass


def test_the_table_covers_every_status_and_carrier():
    assert {(s, c) for s, c, _, _ in TABLE} == {(s, c) for s in HostStatus for c in Carrier}
    assert allowed_carriers(W, uninspected_pass=True) == frozenset()


@pytest.mark.parametrize(
    ("status", "upgrade", "allowed"),
    [
        (P, None, True),
        (P, "websocket", True),
        (P, " WebSocket ", True),
        (P, "h2c", False),
        (P, "H2C", False),
        (P, "websocket, h2c", False),
        (P, "h2c, websocket", False),
        (P, "foo", False),
        (P, "", False),
        (U, "h2c", False),
        (U, "websocket", True),
        (W, "websocket", False),
        (C, "h2c", True),
        (C, "foo", True),
    ],
)
def test_may_upgrade(status, upgrade, allowed):
    assert may_upgrade(status, upgrade) is allowed


def test_every_carrier_has_a_metric_label():
    from urlwarden.metrics import CARRIERS

    assert set(CARRIERS) == {c.value for c in Carrier}
