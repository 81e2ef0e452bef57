"""urlwarden.selftest: the verdict table, and real `urlwarden run` processes on loopback.

The proxies run with a private /etc/hosts and resolv.conf (ProxyProcess(hosts={})), so no test
name resolves and nothing leaves loopback: an unblocked test URL makes mitmproxy answer 502.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support.proxyproc import ProxyProcess, free_port
from urlwarden.config import load_config
from urlwarden.selftest import (
    NOT_BLOCKED_502,
    SelftestCase,
    SelftestResult,
    cases_from_config,
    check_response,
    run_selftest,
)

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
LINK = ("Link", '<https://operator.example/about>; rel="blocked-by"')
TIMEOUT = 10.0


# --- the verdict on one answer (pure) -------------------------------------------------------------

SPLASH = SelftestCase("hotline", "http://selftest.urlwarden.test/")
STRICT = SelftestCase("strict", "http://strict.urlwarden.test/", status=403)
QUIET = SelftestCase("quiet", "http://quiet.urlwarden.test/", mode="notfound")
DROP = SelftestCase("drop", "http://drop.urlwarden.test/", mode="close")
JSON_HOTLINE = b'{"blocked": true, "list": "hotline", "reference": "hotline:1", "operator": "T"}'
JSON_OTHER = b'{"blocked": true, "list": "other", "reference": "other:1", "operator": "T"}'
MITM_502 = b"<html><h1>502 Bad Gateway</h1><p>[Errno -3] Temporary failure in name resolution</p></html>"


@pytest.mark.parametrize(
    ("case", "status", "headers", "body", "ok", "reason"),
    [
        (SPLASH, 451, [LINK], b"", True, 'blocked (451 with Link rel="blocked-by")'),
        (SPLASH, 451, [LINK], JSON_HOTLINE, True, 'blocked (451 with Link rel="blocked-by")'),
        (SPLASH, 451, [("link", "<https://o.example/>; rel=blocked-by")], b"", True, None),
        (SPLASH, 451, [LINK], JSON_OTHER, False, "blocked, but by list 'other', not by this one"),
        (SPLASH, 451, [], b"", False, '451 without a Link rel="blocked-by" header'),
        (SPLASH, 403, [LINK], b"", False, "blocked with status 403, expected 451"),
        (SPLASH, 502, [], MITM_502, False, NOT_BLOCKED_502),
        (SPLASH, 200, [], b"hello", False, "not blocked: the proxy answered 200, expected 451"),
        (SPLASH, 404, [], b"Not Found\n", False, "not blocked: the proxy answered 404, expected 451"),
        (SPLASH, 503, [], b"urlwarden could not check this request, so it was not sent (on_error: block).\n",
         False, "the proxy could not decide (503, on_error: block): see its log"),
        (SPLASH, 407, [], b"", False, "the proxy asks for credentials (407)"),
        (STRICT, 403, [LINK], b"", True, 'blocked (403 with Link rel="blocked-by")'),
        (STRICT, 451, [LINK], b"", False, "blocked with status 451, expected 403"),
        (QUIET, 404, [], b"Not Found\n", True, "blocked (404, mode notfound)"),
        (QUIET, 404, [LINK], b"", False, "not blocked: the proxy answered 404, expected 404 (mode notfound)"),
        (QUIET, 502, [], MITM_502, False, NOT_BLOCKED_502),
        (DROP, 502, [], MITM_502, False, NOT_BLOCKED_502),
        (DROP, 451, [LINK], b"", False, "not blocked: the proxy answered 451, expected the connection"),
    ],
)
def test_check_response(case, status, headers, body, ok, reason):
    result = check_response(case, status, headers, body)
    assert result.list_name == case.list_name
    assert result.ok is ok
    if reason is not None:
        assert result.reason.startswith(reason)
    assert "\n" not in result.reason and "urlwarden.test" not in result.reason


def test_a_proxy_that_is_not_running():
    (result,) = run_selftest(f"http://127.0.0.1:{free_port()}", [("hotline", "http://selftest.urlwarden.test/")],
                             timeout=TIMEOUT)
    assert result == SelftestResult("hotline", False, "cannot connect to the proxy (connection refused): is it running?")


@pytest.mark.parametrize("url", ["ftp://selftest.urlwarden.test/", "selftest.urlwarden.test", ""])
def test_a_test_url_that_is_not_http(url):
    (result,) = run_selftest("http://127.0.0.1:9", [("hotline", url)], timeout=TIMEOUT)
    assert not result.ok and result.reason == "the test URL is not an http(s) URL"


# --- against a real proxy ----------------------------------------------------------------------------

CONFIG = """\
operator:
  name: Test Operator
  url: https://operator.example/about
https:
  intercept: {intercept}
lists:
  - name: hotline
    path: hotline.txt
    test_url: http://selftest.urlwarden.test/
  - name: strict
    path: strict.txt
    status: 403
    test_url: http://strict.urlwarden.test/page
  - name: quiet
    path: quiet.txt
    mode: notfound
    test_url: http://quiet.urlwarden.test/
  - name: drop
    path: drop.txt
    mode: close
    test_url: http://drop.urlwarden.test/
  - name: missing
    path: missing.txt
    test_url: http://missing.urlwarden.test/
  - name: untested
    path: untested.txt
"""
LISTS = {
    "hotline.txt": "selftest.urlwarden.test/\n",
    "strict.txt": "strict.urlwarden.test/page\n",
    "quiet.txt": "quiet.urlwarden.test/\n",
    "drop.txt": "drop.urlwarden.test/\n",
    "missing.txt": "something-else.urlwarden.test/\n",  # the configured test URL is NOT on it
    "untested.txt": "untested.urlwarden.test/\n",
}


def write_config(directory: Path, intercept: str = "listed-hosts") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in LISTS.items():
        (directory / name).write_text(text)
    config = directory / "urlwarden.yaml"
    config.write_text(CONFIG.format(intercept=intercept))
    return config


def start_proxy(workdir: Path, config: Path) -> tuple[ProxyProcess, str, Path]:
    port = free_port()
    argv = [URLWARDEN, "run", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--",
            "--set", f"confdir={workdir / 'conf'}"]
    process = ProxyProcess(argv, port, hosts={}, workdir=workdir)
    process.start()
    return process, f"http://127.0.0.1:{port}", workdir / "conf" / "mitmproxy-ca-cert.pem"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("selftest-proxy")
    config = write_config(workdir)
    process, url, ca = start_proxy(workdir, config)
    try:
        yield url, ca, config
    finally:
        process.stop()


@pytest.mark.e2e
def test_configured_test_urls_through_a_live_proxy(proxy, monkeypatch):
    url, ca, config = proxy
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # ignored: the selftest uses the given proxy
    cases = cases_from_config(load_config(config))
    assert [c.list_name for c in cases] == ["hotline", "strict", "quiet", "drop", "missing"]
    results = {r.list_name: r for r in run_selftest(url, cases, timeout=TIMEOUT, ca_bundle=ca)}
    assert results["hotline"] == SelftestResult("hotline", True, 'blocked (451 with Link rel="blocked-by")')
    assert results["strict"] == SelftestResult("strict", True, 'blocked (403 with Link rel="blocked-by")')
    assert results["quiet"] == SelftestResult("quiet", True, "blocked (404, mode notfound)")
    assert results["drop"] == SelftestResult("drop", True, "blocked (connection closed without a response, mode close)")
    assert results["missing"] == SelftestResult("missing", False, NOT_BLOCKED_502)


@pytest.mark.e2e
def test_plain_pairs_and_a_url_blocked_by_another_list(proxy):
    url, _ca, _config = proxy
    results = run_selftest(url, [("hotline", "http://selftest.urlwarden.test/x?y=1"),
                                 ("untested", "http://selftest.urlwarden.test/")], timeout=TIMEOUT)
    assert results == [
        SelftestResult("hotline", True, 'blocked (451 with Link rel="blocked-by")'),
        SelftestResult("untested", False, "blocked, but by list 'hotline', not by this one"),
    ]


@pytest.mark.e2e
def test_https_test_urls(proxy):
    url, ca, _config = proxy
    cases = [
        SelftestCase("hotline", "https://selftest.urlwarden.test/"),
        SelftestCase("drop", "https://drop.urlwarden.test/", mode="close"),
        SelftestCase("missing", "https://missing.urlwarden.test/"),
    ]
    hotline, drop, missing = run_selftest(url, cases, timeout=TIMEOUT, ca_bundle=ca)
    assert hotline.ok, hotline
    assert drop.ok, drop
    assert not missing.ok
    assert missing.reason.startswith("not blocked: the TLS connection was passed through")


@pytest.mark.e2e
def test_https_without_the_proxy_ca(proxy):
    url, _ca, _config = proxy
    (result,) = run_selftest(url, [("hotline", "https://selftest.urlwarden.test/")], timeout=TIMEOUT)
    assert not result.ok
    assert result.reason.startswith("the proxy's TLS certificate is not trusted")


@pytest.mark.e2e
def test_https_refused_at_connect_without_interception(tmp_path):
    config = write_config(tmp_path, intercept="none")
    process, url, ca = start_proxy(tmp_path, config)
    try:
        whole, http_page = run_selftest(url, [
            ("hotline", "https://selftest.urlwarden.test/"),
            ("hotline", "http://selftest.urlwarden.test/"),
        ], timeout=TIMEOUT, ca_bundle=ca)
    finally:
        process.stop()
    assert whole == SelftestResult(
        "hotline", True, "blocked (the proxy refused the CONNECT with 403: HTTPS not inspected)")
    assert http_page.ok
