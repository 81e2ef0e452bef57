"""urlwarden.logs: JSON lines, address anonymisation, block events, redaction."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging

import pytest

from urlwarden.errors import ConfigError
from urlwarden.logs import (
    BLOCK_EVENT_KEYS,
    JsonFormatter,
    anonymize_ip,
    block_event,
    configure_logging,
    redact,
)


@pytest.fixture
def logged():
    """(logger, stream): the urlwarden logger writing JSON lines into a StringIO."""
    logger = logging.getLogger("urlwarden")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    stream = io.StringIO()
    configure_logging("debug", stream)
    yield logger, stream
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def lines(stream: io.StringIO) -> list[dict]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_one_json_object_per_line(logged):
    logger, stream = logged
    logger.info("blocked", extra={"event": block_event("iwf", "4711", "block", "splash")})
    logger.warning("multi\nline\u2028message")
    first, second = lines(stream)
    assert first == {
        "ts": first["ts"], "level": "info", "logger": "urlwarden", "msg": "blocked",
        "event": "block", "list": "iwf", "entry": "4711", "decision": "block", "mode": "splash",
    }
    assert second["msg"] == "multi\nline\u2028message" and second["level"] == "warning"
    assert stream.getvalue().count("\n") == 2


def test_timestamp_is_iso_8601_utc():
    record = logging.LogRecord("urlwarden", logging.INFO, __file__, 1, "x", None, None)
    record.created = dt.datetime(2030, 1, 2, 3, 4, 5, 678_900, tzinfo=dt.timezone.utc).timestamp()
    line = json.loads(JsonFormatter().format(record))
    assert line["ts"] == "2030-01-02T03:04:05.678Z"
    assert dt.datetime.fromisoformat(line["ts"].replace("Z", "+00:00")).tzinfo is not None


def test_event_fields_cannot_overwrite_the_reserved_ones(logged):
    logger, stream = logged
    logger.error("real", extra={"event": {"ts": "forged", "level": "debug", "msg": "forged", "n": 3, "obj": object()}})
    (line,) = lines(stream)
    assert line["msg"] == "real" and line["level"] == "error" and line["ts"] != "forged"
    assert line["n"] == 3 and line["obj"].startswith("<object")


def test_exceptions_keep_type_and_frames_but_not_the_message(logged):
    logger, stream = logged

    def decide():
        raise ValueError("http://listed.test/secret-path has no host")

    try:
        decide()
    except ValueError:
        logger.exception("internal error in request")
    (line,) = lines(stream)
    assert line["exc_type"] == "ValueError"
    assert any(frame.endswith("in decide") for frame in line["exc_frames"])
    assert "listed.test" not in stream.getvalue() and "secret-path" not in stream.getvalue()
    assert all(frame.split(":")[0].count("/") <= 1 for frame in line["exc_frames"])  # no full paths


def test_level_is_applied_and_validated(logged):
    logger, stream = logged
    configure_logging("WARNING", stream)
    logger.info("hidden")
    logger.warning("shown")
    assert [line["msg"] for line in lines(stream)] == ["shown"]
    with pytest.raises(ConfigError, match="log level"):
        configure_logging("verbose", stream)


def test_configure_logging_replaces_its_handler_and_does_not_propagate(logged):
    logger, stream = logged
    other = io.StringIO()
    configure_logging("info", other)
    configure_logging("info", other)
    ours = [h for h in logger.handlers if getattr(h, "urlwarden", False)]
    assert len(ours) == 1 and not logger.propagate
    logger.info("once")
    assert len(lines(other)) == 1 and stream.getvalue() == ""


def test_configuring_again_does_not_add_a_second_handler(logged):
    logger, stream = logged
    configure_logging("info", stream)
    assert sum(getattr(h, "urlwarden", False) for h in logger.handlers) == 1
    logger.info("x")
    assert lines(stream)[0]["msg"] == "x"


# --- anonymize_ip ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", "127.0.0.0/24"),
        ("127.12.34.56", "127.12.34.0/24"),
        ("192.0.2.77", "192.0.2.0/24"),
        ("192.0.2.255", "192.0.2.0/24"),
        (" 192.0.2.1 ", "192.0.2.0/24"),
        ("2001:db8:abcd:12::1", "2001:db8:abcd::/48"),
        ("[2001:db8:abcd:12::1]", "2001:db8:abcd::/48"),
        ("2001:DB8:ABCD:FFFF:1:2:3:4", "2001:db8:abcd::/48"),
        ("fe80::1%eth0", "fe80::/48"),
        ("::1", "::/48"),
        ("::ffff:192.0.2.77", "192.0.2.0/24"),
        ("::ffff:7f00:1", "127.0.0.0/24"),
        (("192.0.2.9", 51234), "192.0.2.0/24"),
        (("2001:db8:1:2::9", 51234, 0, 0), "2001:db8:1::/48"),
        (b"192.0.2.9", "192.0.2.0/24"),
        ("listed.test", "invalid"),
        ("192.0.2.256", "invalid"),
        ("192.0.2", "invalid"),
        ("", "invalid"),
        (None, "invalid"),
        (42, "invalid"),
        ("1" * 200, "invalid"),
        (b"\xff", "invalid"),
        ((), "invalid"),
    ],
)
def test_anonymize_ip(address, expected):
    assert anonymize_ip(address) == expected


# --- block_event ------------------------------------------------------------------------------------

@pytest.mark.parametrize("log_clients", [False, True])
@pytest.mark.parametrize("client", [None, "192.0.2.77", ("2001:db8:5:6::7", 443), "not-an-address.test"])
def test_block_event_has_only_the_allowed_keys(client, log_clients):
    event = block_event("iwf", "4711", "block", "splash", client=client, log_clients=log_clients)
    assert set(event) <= BLOCK_EVENT_KEYS
    assert {"event", "list", "entry", "decision", "mode"} <= set(event)
    text = json.dumps(event)
    assert "192.0.2.77" not in text and "2001:db8:5:6::7" not in text and "not-an-address.test" not in text
    if log_clients and client is not None:
        assert event["client"] in ("192.0.2.0/24", "2001:db8:5::/48", "invalid")
    else:
        assert "client" not in event


def test_block_event_takes_no_url():
    with pytest.raises(TypeError):
        block_event("iwf", "4711", "block", "splash", url="http://listed.test/")  # type: ignore[call-arg]


# --- redact -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("token=s3cr3t&x=1", ["s3cr3t"], "token=[redacted]&x=1"),
        ("a s3cr3t and s3cr3t", ["s3cr3t"], "a [redacted] and [redacted]"),
        ("key abcdef", ["abc", "abcdef"], "key [redacted]"),  # longest first: removed whole
        ("nothing here", ["s3cr3t"], "nothing here"),
        ("keep", [None, ""], "keep"),
        ("x", [], "x"),
    ],
)
def test_redact(text, secrets, expected):
    assert redact(text, secrets) == expected
