"""The one definition of a normalized digest table, against the obvious one."""

from hypothesis import given, strategies as st

from urlwarden.core.digests import DIGEST_SIZE, digest_prefixes, find_digest, is_sorted_distinct

# few distinct first bytes, so equal 8-byte prefixes (the slow path) come up often
digests = st.binary(min_size=DIGEST_SIZE, max_size=DIGEST_SIZE).map(lambda d: bytes(8) + d[8:]) | \
    st.binary(min_size=DIGEST_SIZE, max_size=DIGEST_SIZE)


@given(st.lists(digests, max_size=20))
def test_sorted_distinct_means_strictly_ascending(values):
    blob = b"".join(values)
    assert is_sorted_distinct(blob) == (values == sorted(set(values)))


@given(st.lists(digests, max_size=20), digests)
def test_find_digest_finds_exactly_the_members(values, probe):
    table = sorted(set(values))
    blob = b"".join(table)
    prefixes = digest_prefixes(blob)
    prefix = int.from_bytes(probe[:8], "big")
    found = find_digest(prefixes, blob, DIGEST_SIZE, prefix, probe)
    assert found == (table.index(probe) if probe in table else -1)


def test_a_partial_digest_is_not_a_table():
    assert not is_sorted_distinct(b"\x00" * (DIGEST_SIZE - 1))
    assert is_sorted_distinct(b"")
