"""Tests for the http feed adapter against a real feed server on 127.0.0.1 (HTTP, HTTPS, mTLS).

No test sleeps for backoff: `sleep`, `rng` and `clock` are injected. Every token is synthetic.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.certs import TestPKI, make_test_pki
from tests.support.feedserver import FeedServer, Reply
from tests.support.proxyproc import free_port
from urlwarden.errors import FeedError
from urlwarden.feeds import FeedVersion, make_adapter
from urlwarden.feeds.http import CHECKSUM_HEADER, SERIAL_HEADER, SINCE_HEADER, HttpAdapter

TOKEN = "tok-3f9a1c7e-synthetic-feed-token"
PASSWORD = "pw-8d1e55-synthetic"
LIST = b"listed.test/\npaths.test/folder/\n"
CLIENT_CN = "urlwarden feed client"


class Sleeps(list):
    """An injected sleep: records the delays, never sleeps."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def server():
    with FeedServer() as running:
        yield running


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return make_test_pki(tmp_path_factory.mktemp("feedpki"), ["feeds.test"])


@pytest.fixture(scope="module")
def client_cert(pki, tmp_path_factory) -> tuple[str, str]:
    return make_client_cert(pki, tmp_path_factory.mktemp("client"))


def make_client_cert(pki: TestPKI, directory: Path, cn: str = CLIENT_CN) -> tuple[str, str]:
    """A client certificate signed by the test CA: (cert.pem, key.pem)."""
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "client.pem", directory / "client-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return str(cert_path), str(key_path)


def adapter(url: str, sleeps: Sleeps | None = None, **options) -> HttpAdapter:
    options.setdefault("connect_timeout", 2.0)
    options.setdefault("read_timeout", 2.0)
    options.setdefault("rng", lambda: 0.5)
    return make_adapter(
        "http", {"url": url, "sleep": sleeps if sleeps is not None else Sleeps(), **options}, "t"
    )


# --- basics -----------------------------------------------------------------------------------


def test_full_fetch_reports_version_checksum_and_headers(server):
    server.script(
        "/l",
        Reply(
            body=LIST,
            etag='"v1"',
            headers={
                "Last-Modified": "Mon, 02 Feb 2026 10:00:00 GMT",
                SERIAL_HEADER: "41",
                CHECKSUM_HEADER: "AB" * 32,
                "Content-Type": "text/plain",
            },
        ),
    )
    with adapter(server.url("/l")) as a:
        payload = a.fetch(None)
    assert payload.body == LIST and not payload.not_modified
    assert payload.version == FeedVersion('"v1"', "Mon, 02 Feb 2026 10:00:00 GMT", "41")
    assert payload.checksum == "ab" * 32 and payload.content_type == "text/plain"
    seen = server.requests_for("/l")[0].headers
    assert seen["user-agent"].startswith("urlwarden/")
    assert "if-none-match" not in seen and SINCE_HEADER.lower() not in seen


def test_conditional_get_and_diff_request(server):
    server.set_default("/l", Reply(body=LIST, etag='"v1"'))
    with adapter(server.url("/l")) as a:
        payload = a.fetch(FeedVersion('"v1"', "Mon, 02 Feb 2026 10:00:00 GMT", "41"))
    assert payload.not_modified and payload.body == b""
    assert payload.version.serial == "41"
    seen = server.requests_for("/l")[0].headers
    assert seen["if-none-match"] == '"v1"'
    assert seen["if-modified-since"] == "Mon, 02 Feb 2026 10:00:00 GMT"
    assert seen[SINCE_HEADER.lower()] == "41"


def test_gzip_is_decoded_and_limited_after_decompression(server):
    server.script("/l", Reply(body=LIST, gzip=True), Reply(body=b"0" * 2_000_000, gzip=True))
    with adapter(server.url("/l"), max_bytes=100_000) as a:
        assert a.fetch(None).body == LIST
        with pytest.raises(FeedError, match="after decompression"):
            a.fetch(None)


def test_declared_length_over_limit_fails_before_reading(server):
    server.script("/l", Reply(body=b"x" * 5000))
    with (
        adapter(server.url("/l"), max_bytes=1000) as a,
        pytest.raises(FeedError, match="5000 bytes is larger than max_bytes=1000"),
    ):
        a.fetch(None)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://feeds.example/list", "https is required"),
        ("https://user:pw@feeds.example/list", "credentials in the URL"),
        ("ftp://127.0.0.1/list", "not an http(s) URL"),
        ("https:///nohost", "not an http(s) URL"),
    ],
)
def test_url_checks(url, reason):
    with pytest.raises(FeedError, match=re.escape(reason)):
        make_adapter("http", {"url": url}, "t")


def test_loopback_http_allowed():
    for url in ("http://127.0.0.1:1/x", "http://[::1]:1/x", "http://localhost:1/x", "http://127.8.9.10/x"):
        make_adapter("http", {"url": url}, "t").close()


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"read_timeout": float("inf")}, "read_timeout"),
        ({"download_timeout": -1}, "download_timeout"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"retries": 99}, "retries"),
        ({"retries": True}, "retries"),
        ({"auth": "oauth"}, "auth"),
        ({"auth": "header", "token_env": "X"}, "header_name"),
        ({"auth": "basic", "password_env": "X"}, "username"),
        ({"auth": "bearer"}, "token_env"),
        ({"token_env": "URLWARDEN_TEST_TOKEN"}, "token_env"),
        ({"client_key": "/nonexistent"}, "client_key"),
        ({"client_cert": "/nonexistent.pem"}, "client_cert"),
        ({"ca_bundle": "/nonexistent.pem"}, "ca_bundle"),
        ({"signature_url": "http://feeds.example/sig"}, "signature_url"),
        ({"signature_header": "Bad Header"}, "signature_header"),
    ],
)
def test_invalid_options_name_the_option(options, option):
    with pytest.raises(FeedError) as info:
        make_adapter("http", {"url": "http://127.0.0.1:1/x", **options}, "t")
    assert option in str(info.value) and str(info.value).startswith("feed 't': ")


def test_query_string_never_shown(server):
    server.set_default("/l", Reply(status=403))
    with adapter(server.url("/l") + "?key=qs-secret-123") as a:
        with pytest.raises(FeedError) as info:
            a.fetch(None)
        assert "qs-secret-123" not in str(info.value) and "qs-secret-123" not in repr(a)
    assert "HTTP 403" in str(info.value)


# --- authentication ---------------------------------------------------------------------------


def test_bearer_token_from_env(server, monkeypatch):
    monkeypatch.setenv("URLWARDEN_TEST_TOKEN", TOKEN)
    server.set_default("/l", Reply(body=LIST))
    with adapter(server.url("/l"), auth="bearer", token_env="URLWARDEN_TEST_TOKEN") as a:
        a.fetch(None)
        monkeypatch.setenv("URLWARDEN_TEST_TOKEN", TOKEN + "-rotated")  # re-read on every fetch
        a.fetch(None)
    assert [r.headers["authorization"] for r in server.requests_for("/l")] == [
        f"Bearer {TOKEN}",
        f"Bearer {TOKEN}-rotated",
    ]


def test_bearer_token_from_file(server, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    server.set_default("/l", Reply(body=LIST))
    with adapter(server.url("/l"), auth="bearer", token_file=str(token_file)) as a:
        a.fetch(None)
    assert server.requests_for("/l")[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_basic_auth(server, tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    server.set_default("/l", Reply(body=LIST))
    with adapter(server.url("/l"), auth="basic", username="hotline", password_file=str(password_file)) as a:
        a.fetch(None)
    expected = "Basic " + base64.b64encode(f"hotline:{PASSWORD}".encode()).decode()
    assert server.requests_for("/l")[0].headers["authorization"] == expected


def test_custom_header_auth(server, monkeypatch):
    monkeypatch.setenv("URLWARDEN_TEST_TOKEN", TOKEN)
    server.set_default("/l", Reply(body=LIST))
    with adapter(
        server.url("/l"), auth="header", header_name="X-Api-Key", token_env="URLWARDEN_TEST_TOKEN"
    ) as a:
        a.fetch(None)
    seen = server.requests_for("/l")[0].headers
    assert seen["x-api-key"] == TOKEN and "authorization" not in seen


def test_token_never_in_errors_or_repr(server, monkeypatch, tmp_path):
    monkeypatch.setenv("URLWARDEN_TEST_TOKEN", TOKEN)
    server.script(
        "/l", Reply(status=401, body=TOKEN.encode(), headers={"WWW-Authenticate": f"Bearer realm={TOKEN}"})
    )
    sleeps = Sleeps()
    errors: list[str] = []
    with adapter(server.url("/l"), sleeps, auth="bearer", token_env="URLWARDEN_TEST_TOKEN") as a:
        for _ in range(1):
            with pytest.raises(FeedError) as info:
                a.fetch(None)
            errors.append(str(info.value))
        texts = [repr(a), str(a), *errors, repr(a._make_auth(a._read_secrets()))]
    refused = adapter(
        f"http://127.0.0.1:{free_port()}/l",
        sleeps,
        auth="bearer",
        token_env="URLWARDEN_TEST_TOKEN",
        retries=0,
    )
    with pytest.raises(FeedError) as info:
        refused.fetch(None)
    texts.append(str(info.value))
    monkeypatch.setenv("URLWARDEN_TEST_TOKEN", "bad\ntoken-" + TOKEN)
    with pytest.raises(FeedError) as info:
        refused.fetch(None)
    texts.append(str(info.value))
    assert "control characters" in texts[-1]
    for text in texts:
        assert TOKEN not in text, text


def test_missing_credentials_fail_at_configuration(monkeypatch, tmp_path):
    monkeypatch.delenv("URLWARDEN_TEST_TOKEN", raising=False)
    with pytest.raises(FeedError, match="environment variable URLWARDEN_TEST_TOKEN is not set"):
        make_adapter(
            "http", {"url": "http://127.0.0.1:1/", "auth": "bearer", "token_env": "URLWARDEN_TEST_TOKEN"}, "t"
        )
    with pytest.raises(FeedError) as info:  # a pasted secret is not echoed as a variable name
        make_adapter(
            "http", {"url": "http://127.0.0.1:1/", "auth": "bearer", "token_env": "sk-live-abcdef"}, "t"
        )
    assert "sk-live-abcdef" not in str(info.value)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(FeedError, match="is empty"):
        make_adapter("http", {"url": "http://127.0.0.1:1/", "auth": "bearer", "token_file": str(empty)}, "t")


# --- TLS ----------------------------------------------------------------------------------------


def test_https_with_ca_bundle(pki):
    with FeedServer(pki=pki) as server:
        server.set_default("/l", Reply(body=LIST))
        with adapter(server.url("/l"), ca_bundle=str(pki.ca_cert)) as a:
            assert a.fetch(None).body == LIST


def test_https_unknown_ca_fails_without_retry(pki):
    sleeps = Sleeps()
    with FeedServer(pki=pki) as server:
        server.set_default("/l", Reply(body=LIST))
        with (
            adapter(server.url("/l"), sleeps) as a,
            pytest.raises(FeedError, match="TLS certificate verification failed"),
        ):
            a.fetch(None)
    assert sleeps == []


def test_mtls_client_certificate(pki, client_cert):
    cert, key = client_cert
    with FeedServer(pki=pki, client_ca=pki.ca_cert) as server:
        server.set_default("/l", Reply(body=LIST))
        with adapter(server.url("/l"), ca_bundle=str(pki.ca_cert), client_cert=cert, client_key=key) as a:
            assert a.fetch(None).body == LIST
        assert server.requests_for("/l")[0].client_cn == CLIENT_CN
        with (
            adapter(server.url("/l"), ca_bundle=str(pki.ca_cert), retries=0) as a,
            pytest.raises(FeedError) as info,
        ):
            a.fetch(None)
        assert len(server.requests_for("/l")) == 1  # the certificate-less client never got in
        assert "feed 't'" in str(info.value)


# --- retries ------------------------------------------------------------------------------------


def test_retry_after_seconds_is_honoured(server):
    server.script("/l", Reply(status=503, headers={"Retry-After": "2"}), Reply(body=LIST))
    sleeps = Sleeps()
    with adapter(server.url("/l"), sleeps) as a:
        assert a.fetch(None).body == LIST
    assert sleeps == [2.0]


def test_retry_after_http_date_uses_injected_clock(server):
    now = 1_800_000_000.0
    when = email.utils.formatdate(now + 7, usegmt=True)
    server.script("/l", Reply(status=429, headers={"Retry-After": when}), Reply(body=LIST))
    sleeps = Sleeps()
    with adapter(server.url("/l"), sleeps, clock=lambda: now) as a:
        assert a.fetch(None).body == LIST
    assert sleeps == [7.0]


def test_retry_after_above_limit_gives_up(server):
    server.script("/l", Reply(status=503, headers={"Retry-After": "3600"}), Reply(body=LIST))
    sleeps = Sleeps()
    with (
        adapter(server.url("/l"), sleeps, retry_after_max=60) as a,
        pytest.raises(FeedError, match="retry after 3600s"),
    ):
        a.fetch(None)
    assert sleeps == [] and len(server.requests_for("/l")) == 1


def test_backoff_is_exponential_full_jitter_and_bounded(server):
    server.set_default("/l", Reply(status=500))
    sleeps = Sleeps()
    a = adapter(server.url("/l"), sleeps, retries=5, backoff_base=1.0, backoff_max=5.0, rng=lambda: 1.0)
    with a, pytest.raises(FeedError, match=r"HTTP 500.*after 6 attempts"):
        a.fetch(None)
    assert sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert len(server.requests_for("/l")) == 6
    jittered = Sleeps()
    with adapter(server.url("/l"), jittered, retries=3, rng=lambda: 0.25) as a, pytest.raises(FeedError):
        a.fetch(None)
    assert jittered == [0.25, 0.5, 1.0]


def test_client_errors_are_not_retried(server):
    server.set_default("/l", Reply(status=404))
    sleeps = Sleeps()
    with adapter(server.url("/l"), sleeps) as a, pytest.raises(FeedError, match="HTTP 404"):
        a.fetch(None)
    assert sleeps == [] and len(server.requests_for("/l")) == 1


def test_redirects_are_not_followed(server):
    server.set_default("/l", Reply(status=302, headers={"Location": server.url("/elsewhere")}))
    with adapter(server.url("/l")) as a, pytest.raises(FeedError, match="redirects are not followed"):
        a.fetch(None)
    assert server.requests_for("/elsewhere") == []


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(body=LIST * 100, reset_after=10), "connection reset by peer|closed before the whole body"),
        (Reply(body=LIST * 100, truncate_to=10), "closed before the whole body"),
        (Reply(body=LIST, delay=5.0), r"read timed out \(read_timeout=0.3s\)"),
    ],
    ids=["reset", "truncated", "read-timeout"],
)
def test_transport_faults_are_retried_then_reported(server, reply, reason):
    server.script("/l", reply, reply)
    sleeps = Sleeps()
    with (
        adapter(server.url("/l"), sleeps, retries=1, read_timeout=0.3) as a,
        pytest.raises(FeedError, match=reason) as info,
    ):
        a.fetch(None)
    assert "after 2 attempts" in str(info.value)
    assert len(sleeps) == 1


def test_connection_refused(server):
    sleeps = Sleeps()
    with (
        adapter(f"http://127.0.0.1:{free_port()}/l", sleeps, retries=2) as a,
        pytest.raises(FeedError, match="connection refused"),
    ):
        a.fetch(None)
    assert len(sleeps) == 2


def test_recovers_within_retries(server):
    server.script("/l", Reply(body=LIST, reset_after=3), Reply(status=502), Reply(body=LIST))
    with adapter(server.url("/l")) as a:
        assert a.fetch(None).body == LIST


# --- signatures ---------------------------------------------------------------------------------


def test_signature_from_url_and_header(server):
    signature = bytes(range(64))
    server.set_default("/l", Reply(body=LIST, headers={"X-Signature": base64.b64encode(signature).decode()}))
    server.set_default("/l.sig", Reply(body=signature))
    with adapter(server.url("/l"), signature_url=server.url("/l.sig")) as a:
        assert a.fetch(None).signature == signature
    with adapter(server.url("/l"), signature_header="X-Signature") as a:
        assert base64.b64decode(a.fetch(None).signature) == signature
    server.set_default("/big.sig", Reply(body=b"x" * 10_000))
    with (
        adapter(server.url("/l"), signature_url=server.url("/big.sig")) as a,
        pytest.raises(FeedError, match="signature"),
    ):
        a.fetch(None)


def test_closed_adapter_refuses(server):
    a = adapter(server.url("/l"))
    a.close()
    a.close()
    with pytest.raises(FeedError, match="closed"):
        a.fetch(None)
