"""Tests of urlwarden.config: every error names the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from urlwarden.config import default_config_path, load_config, parse_config, parse_listen
from urlwarden.errors import ConfigError


def test_embedded_default_loads_and_is_local():
    config = load_config(default_config_path())
    assert config.listen == ("127.0.0.1", 8080)
    assert config.on_error == "block"
    assert config.https.intercept == "listed-hosts"
    assert [lc.name for lc in config.lists] == ["sample-block", "sample-csv"]
    assert all(Path(lc.spec.path).is_file() for lc in config.lists + config.allow)
    assert config.lists[0].test_url == "http://selftest.urlwarden.test/"


def test_full_config(tmp_path):
    text = """
listen: "[::1]:3128"
on_error: allow
operator:
  name: Example ISP
  url: https://isp.example/blocking
  appeal_url: https://isp.example/appeal
https:
  intercept: none
  uninspected: pass
lists:
  - name: hotline
    path: lists/hotline.csv
    format: csv
    reason: Licensor's wording.
    status: 403
    mode: notfound
allow:
  - path: exceptions.txt
"""
    config = parse_config(text, "cfg.yaml", tmp_path)
    assert config.listen == ("::1", 3128)
    assert config.on_error == "allow"
    assert config.page.operator_name == "Example ISP"
    assert config.https.intercept == "none" and config.https.uninspected == "pass"
    (hotline,) = config.lists
    assert hotline.spec.path == str(tmp_path / "lists/hotline.csv")
    assert hotline.spec.format == "csv" and hotline.name == "hotline"
    assert (hotline.policy.status, hotline.policy.mode) == (403, "notfound")
    assert config.allow[0].name == "exceptions"
    assert config.policy_for("hotline").status == 403


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("listen: 127.0.0.1\n", "cfg.yaml:1: listen: must be HOST:PORT"),
        ("listen: 127.0.0.1:0\n", "cfg.yaml:1: listen: must be HOST:PORT"),
        ("on_eror: block\n", "cfg.yaml:1: config: unknown key 'on_eror'"),
        ("on_error: maybe\n", "cfg.yaml:1: on_error: must be one of block, allow"),
        ("https:\n  intercept: some\n", "cfg.yaml:2: https.intercept: must be one of listed-hosts, all, none"),
        ("lists:\n  - name: a\n", "cfg.yaml:2: lists[0]: missing key 'path'"),
        ("lists:\n  - path: a.txt\n    status: 200\n", "cfg.yaml:3: lists[0].status: must be an integer from 400 to 599"),
        ("lists:\n  - path: a.txt\n    status: '451'\n", "cfg.yaml:3: lists[0].status: must be"),
        ("lists:\n  - path: a.txt\n    mode: redirect\n", "cfg.yaml:3: lists[0].mode: must be one of splash"),
        ("lists:\n  - path: a.txt\n    colour: red\n", "cfg.yaml:3: lists[0]: unknown key 'colour'"),
        ("allow:\n  - path: a.txt\n    reason: x\n", "cfg.yaml:3: allow[0]: unknown key 'reason'"),
        ("lists: a.txt\n", "cfg.yaml:1: lists: must be a list"),
        ("operator:\n  url: ftp://x.example/\n", "cfg.yaml:2: operator.url: must be an http:// or https:// URL"),
        ("lists:\n  - path: a.txt\n  - path: b/a.txt\n", "cfg.yaml:3: lists[1]: list name 'a' is used twice"),
        ("listen: [1, 2\n", "cfg.yaml:2: invalid YAML"),
        ("", "cfg.yaml: empty configuration"),
        ("- a\n", "cfg.yaml:1: config: must be a mapping"),
        ("on_error: block\non_error: allow\n", "cfg.yaml:2: config: duplicate key 'on_error'"),
        ("lists:\n  - path: a.txt\n    name: 'bad name!'\n", "cfg.yaml:3: lists[0].name: must be a name"),
    ],
)
def test_errors_name_file_line_and_key(text, message):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cfg.yaml", Path("/nowhere"))
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_and_binary_files(tmp_path):
    with pytest.raises(ConfigError, match=r"missing.yaml: cannot read"):
        load_config(tmp_path / "missing.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00listen")
    with pytest.raises(ConfigError, match=r"bin.yaml: not UTF-8"):
        load_config(binary)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:3128", ("::1", 3128)), ("0.0.0.0:1", ("0.0.0.0", 1))],
)
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lists:\n  - path: a.txt\n    status: 407\n", "cfg.yaml:2: lists[0]: "),
        ("operator:\n  url: https://b\u00fccherei.example/\n", "cfg.yaml:2: operator.url: must be an http:// or https:// URL"),
        ("operator:\n  appeal_url: 'https://x.example/a b'\n", "cfg.yaml:2: operator.appeal_url: must be"),
    ],
)
def test_block_page_rules_are_config_errors(text, message):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cfg.yaml", Path("/nowhere"))
    assert str(info.value).startswith(message), str(info.value)


def test_feed_admin_access_and_logging_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("UW_TEST_TOKEN", "tok-123")
    monkeypatch.setenv("HOTLINE_TOKEN", "feed-secret")
    (tmp_path / "ca.pem").write_text("placeholder: only its existence is checked at load time\n")
    text = """
state_dir: state
admin:
  listen: 127.0.0.1:9999
  token_env: UW_TEST_TOKEN
logging:
  level: debug
  client_addresses: true
access:
  allowed_clients: [192.0.2.0/24, "2001:db8::/32"]
lists:
  - name: hotline
    format: sha256
    feed:
      adapter: http
      options:
        url: https://feeds.example/hotline
        auth: bearer
        token_env: HOTLINE_TOKEN
        ca_bundle: ca.pem
      refresh: 12h
      max_age: 2d
      max_shrink: 0.25
      required: true
  - path: local.txt
"""
    config = parse_config(text, "cfg.yaml", tmp_path)
    assert config.state_dir == str(tmp_path / "state")
    assert config.admin.listen == ("127.0.0.1", 9999) and config.admin.token == "tok-123"
    assert "tok-123" not in repr(config)
    assert (config.logging.level, config.logging.client_addresses) == ("debug", True)
    assert config.access.allows("192.0.2.9") and config.access.allows("::ffff:192.0.2.9")
    assert not config.access.allows("127.0.0.1") and config.access.explicit
    (feed,) = config.feeds
    assert (feed.name, feed.adapter, feed.format, feed.interval, feed.max_age, feed.max_shrink, feed.required) == (
        "hotline", "http", "sha256", 43200.0, 172800.0, 0.25, True)
    assert feed.options["ca_bundle"] == str(tmp_path / "ca.pem")
    assert [lc.name for lc in config.static_lists] == ["local"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lists:\n  - name: f\n    feed:\n      options: {}\n", "cfg.yaml:4: lists[0].feed: missing key 'adapter'"),
        ("lists:\n  - name: f\n    feed:\n      adapter: carrier-pigeon\n",
         "cfg.yaml:4: lists[0].feed: unknown feed adapter 'carrier-pigeon'"),
        ("lists:\n  - name: f\n    feed:\n      adapter: http\n      options:\n        url: https://f.example/\n"
         "        colour: red\n", "cfg.yaml:6: lists[0].feed: "),
        ("lists:\n  - name: f\n    feed:\n      adapter: file\n      refresh: soon\n", "cfg.yaml:5: lists[0].feed.refresh: must be a duration"),
        ("lists:\n  - name: f\n    feed:\n      adapter: file\n      max_shrink: 2\n", "cfg.yaml:5: lists[0].feed.max_shrink: must be a fraction"),
        ("lists:\n  - feed:\n      adapter: file\n", "cfg.yaml:2: lists[0]: a feed needs a 'name'"),
        ("lists:\n  - name: f\n    path: a.txt\n    feed:\n      adapter: file\n", "cfg.yaml:2: lists[0]: give either 'path'"),
        ("admin:\n  listen: 0.0.0.0:9181\n", "cfg.yaml:2: admin.listen: a token (token_env or token_file) is required off loopback"),
        ("admin:\n  token_env: UW_SURELY_UNSET_VAR\n", "cfg.yaml:2: admin.token_env: environment variable UW_SURELY_UNSET_VAR is not set"),
        ("admin:\n  token_file: nope\n", "cfg.yaml:2: admin.token_file: cannot read"),
        ("access:\n  allowed_clients: [10.0.0.0/33]\n", "cfg.yaml:2: access.allowed_clients[0]: not a CIDR network"),
        ("access:\n  allowed_clients: []\n", "cfg.yaml:2: access.allowed_clients: must be a non-empty list"),
        ("logging:\n  level: loud\n", "cfg.yaml:2: logging.level: must be one of debug"),
    ],
)
def test_feed_admin_access_errors(text, message, tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cfg.yaml", tmp_path)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_a_tuf_feed_gets_the_adapters_default_refresh_and_paths_relative_to_the_config(tmp_path):
    from urlwarden.exports.tufrepo import init_keys

    init_keys(str(tmp_path / "keys"))
    text = """
lists:
  - name: hotline
    format: sha256
    feed:
      adapter: tuf
      options:
        url: https://fleet.example/repo/
        root_file: keys/metadata/1.root.json
        metadata_path: state/tuf-hotline
"""
    (feed,) = parse_config(text, "cfg.yaml", tmp_path).feeds
    assert feed.interval == 30.0  # the tuf adapter's default: the fleet's one-minute freshness
    assert feed.options["root_file"] == str(tmp_path / "keys" / "metadata" / "1.root.json")
    assert feed.options["metadata_path"] == str(tmp_path / "state" / "tuf-hotline")
    (feed,) = parse_config(text.replace("      options:", "      refresh: 5m\n      options:"), "cfg.yaml",
                           tmp_path).feeds
    assert feed.interval == 300.0
def test_texts_per_language_and_operator_template(tmp_path):
    from urlwarden.blockpage import Localized
    from urlwarden.blocktemplate import OperatorTemplate

    (tmp_path / "block.html").write_text("<p>{{ reason or default_reason }}</p>\n")
    config = parse_config("""
operator:
  help_text: {en: Help is available., de: Es gibt Hilfe.}
  template: block.html
lists:
  - path: a.txt
    reason:
      en: Listed.
      fr: Listée.
""", "cfg.yaml", tmp_path)
    assert config.page.help_text == Localized((("en", "Help is available."), ("de", "Es gibt Hilfe.")))
    assert config.lists[0].policy.reason.get("fr") == "Listée."
    assert config.lists[0].policy.reason.get("de") == "Listed."
    assert isinstance(config.page.template, OperatorTemplate)
    assert config.page.template.path == str(tmp_path / "block.html")


@pytest.mark.parametrize(("text", "message"), [
    ("lists:\n  - path: a.txt\n    reason: {de: Gelistet.}\n",
     "cfg.yaml:3: lists[0].reason: give the default language 'en' too"),
    ("lists:\n  - path: a.txt\n    reason: {en: x, es: y}\n", "cfg.yaml:3: lists[0].reason: unknown key 'es'"),
    ("lists:\n  - path: a.txt\n    reason: {en: ''}\n", "cfg.yaml:3: lists[0].reason.en: must be non-empty text"),
    ("operator:\n  help_text: [a]\n", "cfg.yaml:2: operator.help_text: must be non-empty text or {en: ..., de: ...}"),
    ("operator:\n  template: missing.html\n", "cfg.yaml:2: operator.template: {dir}/missing.html: cannot read"),
    ("operator:\n  template: broken.html\n", "cfg.yaml:2: operator.template: {dir}/broken.html:2: unexpected '}'"),
])
def test_texts_and_template_errors(tmp_path, text, message):
    (tmp_path / "broken.html").write_text("<p>\n{{ reason }\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cfg.yaml", tmp_path)
    assert str(info.value).startswith(message.replace("{dir}", str(tmp_path))), str(info.value)
    assert "\n" not in str(info.value)
