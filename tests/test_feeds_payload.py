"""Tests for urlwarden.feeds.payload: checksum, full lists, diffs, signatures (all data synthetic)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from urlwarden.errors import FeedError
from urlwarden.feeds import payload
from urlwarden.feeds.payload import (
    apply_diff,
    checksum,
    encode_diff,
    encode_list_header,
    is_diff,
    load_public_key,
    normalize,
    parse_diff,
    parse_full,
    verify_signature,
)
from urlwarden.core.lists import ListSpec, digest, parse_text


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def full(text: str, fmt: str = "plain"):
    return parse_full(text.encode(), fmt, "t")[0]


def digest_set(parsed) -> set[bytes]:
    return {parsed.digest_at(i) for i in range(parsed.count)}


# --- checksum --------------------------------------------------------------------------------


def test_checksum_is_sha256_of_sorted_distinct_digests():
    entries = ["b.test/", "a.test/x/", "b.test/"]
    expected = hashlib.sha256(b"".join(sorted({digest(e) for e in entries}))).hexdigest()
    parsed = parse_text("\n".join(entries), ListSpec("t.txt", "plain", "t"))
    assert checksum(parsed) == expected
    assert checksum(normalize(parsed)) == expected


def test_checksum_same_for_plain_list_and_its_hashed_form():
    plain = full("a.test/\nHTTP://B.test:80/p.html\n# comment\n")
    hashed = full(f"{sha('a.test/')}\n{sha('b.test/p.html')}\nhost:{sha('a.test')}\n", "sha256")
    assert checksum(plain) == checksum(hashed)


def test_checksum_ignores_order_duplicates_and_host_keys():
    one = full(f"{sha('a.test/')}\n{sha('b.test/')}\n", "sha256")
    two = full(f"{sha('b.test/')}\nhost:{sha('b.test')}\n{sha('a.test/')}\n{sha('b.test/')}\n", "sha256")
    assert checksum(one) == checksum(two)


# --- full lists ------------------------------------------------------------------------------


def test_parse_full_normalizes_and_reads_header():
    body = encode_list_header("42", checksum(full("a.test/\nb.test/\n"))) + "b.test/\na.test/\na.test/\n"
    parsed, header = parse_full(body.encode(), "plain", "t")
    assert header.serial == "42"
    assert header.checksum == checksum(parsed)
    assert parsed.count == 2
    assert parsed.digests == b"".join(sorted({digest("a.test/"), digest("b.test/")}))
    assert parsed.path == "feed:t" and parsed.name == "t"


def test_parse_full_header_line_is_removed_for_csv_and_keeps_line_numbers():
    body = encode_list_header(serial="7") + "url,id\nlisted.test/,A1\nbad url here,A2\n"
    parsed, header = parse_full(body.encode(), "csv", "t")
    assert header.serial == "7"
    assert parsed.ids == ("A1",)
    assert parsed.problems and parsed.problems[0].startswith("feed:t:4:")  # line 1 is the header


def test_normalize_keeps_first_id():
    parsed = parse_text("url,id\nb.test/,B\na.test/,A1\na.test/,A2\n", ListSpec("t.csv", "csv", "t"))
    norm = normalize(parsed)
    pairs = dict(zip([norm.digest_at(i) for i in range(norm.count)], norm.ids, strict=True))
    assert pairs == {digest("a.test/"): "A1", digest("b.test/"): "B"}


@pytest.mark.parametrize(
    ("body", "fmt", "reason"),
    [
        (b"", "plain", "no valid entries"),
        (b"\x00\x01\x02binary", "plain", "NUL"),
        (b"\xff\xfe\xfa", "plain", "not UTF-8"),
        (b"<html><body>oops</body></html>\n", "sha256", "looks like HTML"),
        (b"\n  <?xml version='1.0'?><list/>\n", "plain", "looks like HTML or XML"),
        (b"zzz\nnot-hex\n", "sha256", "no valid entries"),
        (f"{sha('a.test/')}\n{sha('b.test/')}\n".encode(), "plain", "looks like a sha256 list"),
        (b"# urlwarden-list v1 serial=bad!serial\na.test/\n", "plain", "invalid serial"),
        (b"# urlwarden-list v1 sha256=xyz\na.test/\n", "plain", "invalid checksum"),
        (b"# urlwarden-list v1 colour=blue\na.test/\n", "plain", "unknown field"),
        (b"# urlwarden-list v9 serial=1\na.test/\n", "plain", "unsupported list version"),
    ],
)
def test_parse_full_rejects(body, fmt, reason):
    with pytest.raises(FeedError) as info:
        parse_full(body, fmt, "t")
    assert reason in str(info.value)
    assert str(info.value).startswith("feed 't': ")


# --- diffs -----------------------------------------------------------------------------------


def test_plain_diff_applies_and_matches_full_checksum():
    base = full("a.test/\nb.test/x/\nc.test/\n")
    target = full("b.test/x/\nc.test/\nd.test/deep/er/\n")
    body = encode_diff("1", "2", checksum(target), added=["d.test/deep/er/"], removed=["a.test/"])
    diff = parse_diff(body, "t")
    assert (diff.base, diff.serial) == ("1", "2")
    result = apply_diff(base, diff, "plain", "t")
    assert result.digests == target.digests
    assert checksum(result) == checksum(target)
    # host keys: added hosts join, removed ones stay (a spare key only costs inspection)
    assert digest("d.test") in result.host_keys and digest("a.test") in result.host_keys
    assert result.max_folder_depth == 3


def test_sha256_diff_updates_host_keys():
    base = full(f"{sha('a.test/')}\nhost:{sha('a.test')}\n", "sha256")
    target = full(f"{sha('b.test/')}\nhost:{sha('b.test')}\n", "sha256")
    body = encode_diff(
        "1",
        "2",
        checksum(target),
        added=[sha("b.test/"), f"host:{sha('b.test')}"],
        removed=[sha("a.test/"), f"HOST:{sha('a.test').upper()}"],
    )
    result = apply_diff(base, parse_diff(body, "t"), "sha256", "t")
    assert result.digests == target.digests
    assert result.host_keys == frozenset({digest("b.test")})


def test_diff_never_gives_partial_host_keys_to_a_list_without_them():
    base = full(f"{sha('a.test/')}\n", "sha256")
    assert base.host_keys is None
    target = full(f"{sha('a.test/')}\n{sha('b.test/')}\n", "sha256")
    body = encode_diff("1", "2", checksum(target), added=[sha("b.test/"), f"host:{sha('b.test')}"])
    assert apply_diff(base, parse_diff(body, "t"), "sha256", "t").host_keys is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"# urlwarden-diff v1 base=1 serial=2\n+a.test/\n", "lacks sha256="),
        (f"# urlwarden-diff v1 base=1 serial=2 sha256={'0' * 64}\na.test/\n".encode(), "neither '+' nor '-'"),
        (f"# urlwarden-diff v1 base=1 serial=2 sha256={'0' * 64} x=1\n".encode(), "unknown field"),
        (f"# urlwarden-diff v2 base=1 serial=2 sha256={'0' * 64}\n".encode(), "unsupported diff version"),
        (f"# urlwarden-diff v1 base=1 base=2 serial=2 sha256={'0' * 64}\n".encode(), "malformed"),
    ],
)
def test_parse_diff_rejects(body, reason):
    assert is_diff(body)
    with pytest.raises(FeedError) as info:
        parse_diff(body, "t")
    assert reason in str(info.value)


def test_apply_diff_checksum_mismatch():
    base = full("a.test/\n")
    body = encode_diff("1", "2", "0" * 64, added=["b.test/"])
    with pytest.raises(FeedError, match="checksum"):
        apply_diff(base, parse_diff(body, "t"), "plain", "t")


@pytest.mark.parametrize(
    ("fmt", "added", "removed", "reason"),
    [
        ("csv", ["x"], [], "not supported for csv"),
        ("sha256", ["nothex"], [], "unusable entry lines"),
        ("plain", ["a.test/ # note"], [], "unusable"),
        ("plain", ["b.test/"], ["b.test/"], "both adds and removes"),
    ],
)
def test_apply_diff_refuses(fmt, added, removed, reason):
    base = full("a.test/\n") if fmt != "sha256" else full(f"{sha('a.test/')}\n", "sha256")
    body = encode_diff("1", "2", "0" * 64, added=added, removed=removed)
    with pytest.raises(FeedError, match=reason):
        apply_diff(base, parse_diff(body, "t"), fmt, "t")


def test_is_diff():
    assert is_diff(b"# urlwarden-diff v1 base=1 serial=2 sha256=" + b"0" * 64)
    assert not is_diff(b"a.test/\n# urlwarden-diff v1")
    assert not is_diff(b"# urlwarden-list v1 serial=2\na.test/\n")


# --- property: diff(old -> new) applied to old == new ---------------------------------------

HOSTS = [f"h{i}.test" for i in range(6)]
PATHS = ["/", "/a/", "/a/b/", "/p.html", "/q.php?id=1"]
ENTRIES = [h + p for h in HOSTS for p in PATHS]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    old=st.sets(st.sampled_from(ENTRIES), min_size=1),
    new=st.sets(st.sampled_from(ENTRIES), min_size=1),
    hashed=st.booleans(),
)
def test_random_diff_gives_the_full_list_checksum(old, new, hashed):
    fmt = "sha256" if hashed else "plain"

    def render(entries):
        return sorted(sha(e) for e in entries) if hashed else sorted(entries)

    base = full("\n".join(render(old)) + "\n", fmt)
    target = full("\n".join(render(new)) + "\n", fmt)
    added = render(new - old)
    removed = render(old - new)
    result = apply_diff(
        base, parse_diff(encode_diff("1", "2", checksum(target), added, removed), "t"), fmt, "t"
    )
    assert checksum(result) == checksum(target)
    assert result.digests == target.digests
    if not hashed:
        assert target.host_keys <= result.host_keys  # superset: never hides a listed host


# --- signatures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keypair():
    private = Ed25519PrivateKey.generate()
    return private, private.public_key()


def test_signature_roundtrip_raw_and_base64(keypair):
    private, public = keypair
    body = b"a.test/\n"
    signature = private.sign(body)
    verify_signature(body, signature, public, "t")
    verify_signature(body, base64.b64encode(signature) + b"\n", public, "t")


@pytest.mark.parametrize("case", ["missing", "wrong-body", "garbage", "other-key"])
def test_signature_failures(keypair, case):
    private, public = keypair
    body = b"a.test/\n"
    signature = {
        "missing": None,
        "wrong-body": private.sign(b"b.test/\n"),
        "garbage": b"not a signature",
        "other-key": Ed25519PrivateKey.generate().sign(body),
    }[case]
    with pytest.raises(FeedError) as info:
        verify_signature(body, signature, public, "t")
    assert str(info.value).startswith("feed 't': ")


def test_load_public_key_forms(keypair, tmp_path):
    _, public = keypair
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "k.pem").write_bytes(pem)
    for value in (base64.b64encode(raw).decode(), base64.b64encode(der).decode(), str(tmp_path / "k.pem")):
        assert (
            load_public_key(value, "t").public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            == raw
        )


@pytest.mark.parametrize("value", ["", "/nonexistent/key.pem", "bm90IGEga2V5"])
def test_load_public_key_errors(value):
    with pytest.raises(FeedError, match="public_key"):
        load_public_key(value, "t")


def test_all_is_curated():
    assert set(payload.__all__) <= set(dir(payload))
