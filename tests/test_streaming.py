"""Unit tests for urlwarden.frontends.proxy.streaming: the streaming option, message trimming, the early answer."""

from __future__ import annotations

import logging

import pytest
from mitmproxy import exceptions
from mitmproxy.addons import proxyserver
from mitmproxy.proxy.layers import http as layers_http
from mitmproxy.test import taddons, tflow

from urlwarden.frontends.proxy.addon import UrlWarden
from urlwarden.frontends.proxy.streaming import (
    ENGINE_LOGGER, BodyStreaming, install_answer_before_body, stream_large_bodies_value,
)


@pytest.mark.parametrize("text, expected", [
    ("0", "0"),
    ("1", "1"),
    ("512k", "512k"),
    (" 10M ", "10m"),
    ("1g", "1g"),
    ("off", None),
    ("OFF", None),
    ("", None),
])
def test_stream_large_bodies_value(text, expected):
    assert stream_large_bodies_value(text) == expected


@pytest.mark.parametrize("text", ["-1", "lots", "10mb", "1.5m", "k"])
def test_stream_large_bodies_value_rejects_what_is_not_a_size(text):
    with pytest.raises(ValueError):
        stream_large_bodies_value(text)


def streaming_context():
    """BodyStreaming with mitmproxy's proxyserver options (stream_large_bodies lives there)."""
    addon = BodyStreaming()
    return addon, taddons.context(proxyserver.Proxyserver(), addon)


def test_every_body_streams_by_default():
    addon, context = streaming_context()
    with context as tctx:
        tctx.configure(addon)  # mitmproxy reports only changed options: the default applies anyway
        assert tctx.options.urlwarden_stream_bodies == "0"
        assert tctx.options.stream_large_bodies == "0"


@pytest.mark.parametrize("setting, expected", [("10m", "10m"), ("off", None), ("0", "0")])
def test_stream_setting_sets_mitmproxys_option(setting, expected):
    addon, context = streaming_context()
    with context as tctx:
        tctx.configure(addon, urlwarden_stream_bodies=setting)
        assert tctx.options.stream_large_bodies == expected


def test_a_bad_stream_setting_is_refused_naming_the_option():
    addon, context = streaming_context()
    with context as tctx:
        tctx.configure(addon)
        with pytest.raises(exceptions.OptionsError, match="urlwarden_stream_bodies: 'lots'"):
            tctx.configure(addon, urlwarden_stream_bodies="lots")
        assert tctx.options.stream_large_bodies == "0"


def test_the_urlwarden_addon_brings_body_streaming_with_it():
    assert any(isinstance(a, BodyStreaming) for a in UrlWarden().addons)


@pytest.mark.parametrize("make_flow, messages", [
    (tflow.ttcpflow, lambda f: f.messages),
    (tflow.tudpflow, lambda f: f.messages),
    (tflow.twebsocketflow, lambda f: f.websocket.messages),
])
@pytest.mark.parametrize("keep", [False, True])
def test_message_history_is_trimmed_to_the_latest_message_unless_kept(make_flow, messages, keep):
    addon = BodyStreaming()
    hook = {tflow.ttcpflow: addon.tcp_message, tflow.tudpflow: addon.udp_message,
            tflow.twebsocketflow: addon.websocket_message}[make_flow]
    with taddons.context(addon) as tctx:
        tctx.configure(addon, urlwarden_keep_messages=keep)
        flow = make_flow()
        before = list(messages(flow))
        assert len(before) > 1
        hook(flow)
        assert messages(flow) == (before if keep else before[-1:])


def test_the_early_answer_is_installed_once_into_mitmproxys_http_stream():
    assert install_answer_before_body() is True
    patched = layers_http.HttpStream.state_wait_for_request_headers
    assert install_answer_before_body() is True
    assert layers_http.HttpStream.state_wait_for_request_headers is patched
    assert layers_http.HttpStream._urlwarden_answers_before_body is True


@pytest.mark.parametrize("private, level", [(True, logging.WARNING), (False, logging.NOTSET)])
def test_private_logs_keep_the_engine_from_making_a_record_per_streamed_message(private, level):
    addon = UrlWarden()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, urlwarden_private_logs=private)
        assert logging.getLogger(ENGINE_LOGGER).level == level
    logging.getLogger(ENGINE_LOGGER).setLevel(logging.NOTSET)
