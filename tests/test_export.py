"""urlwarden.exports.export: stage-1 diversion addresses and fleet snapshots.

No name is ever resolved for real: every resolver here is an injected function (the system
resolver is tested with an injected ``getaddrinfo``). Addresses are documentation ranges and
loopback, used as data only; where a test needs them to count as ordinary public addresses it
passes ``special=()``.
"""

from __future__ import annotations

import hashlib
import io
import re
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from urlwarden.exports import export
from urlwarden.config import parse_config
from urlwarden.errors import ConfigError, FeedError, ListError, UrlwardenError
from urlwarden.exports.export import (
    Confirmations,
    ExportSettings,
    SharedNetwork,
    SystemResolver,
    export_divert,
    export_snapshot,
    list_hosts,
    parse_export_settings,
    plan_divert,
    read_confirmations,
    read_networks_file,
    render_nft,
    render_plain,
    resolve_hosts,
    special_range,
)
from urlwarden.feeds import FeedVersion
from urlwarden.feeds.manager import FeedManager, FeedSpec
from urlwarden.feeds.payload import checksum, load_public_key, parse_full, verify_signature
from urlwarden.feeds.store import LastKnownGood
from urlwarden.core.lists import load_list, make_spec, parse_text

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
ip = ipaddress.ip_address
net = ipaddress.ip_network

PLAIN = """\
# a plain list
listed.test/
HTTP://WWW.Listed.TEST:8080/page.html
paths.test/folder/
paths.test/q.php?id=7
127.0.0.66/bad/
http://[2001:db8::66]/x
bad entry/ # whitespace: a bad line
{digest}
"""


def table_resolver(table: dict[str, list[str]], calls: list | None = None):
    def resolver(name: str, timeout: float) -> list[str]:
        if calls is not None:
            calls.append((name, timeout))
        if name in table:
            return table[name]
        raise OSError(-2, "Name or service not known")
    return resolver


# --- hosts of lists -----------------------------------------------------------------------------

def test_list_hosts_of_a_plain_list(tmp_path):
    path = tmp_path / "block.txt"
    path.write_text(PLAIN.format(digest="ab" * 32))
    assert list_hosts(make_spec(path)) == {"listed.test", "www.listed.test", "paths.test", "127.0.0.66",
                                           "[2001:db8::66]"}


def test_list_hosts_of_a_csv_url_list(tmp_path):
    path = tmp_path / "hot.csv"
    path.write_text("id,URL,category\nH-1,csv.test/a.html,c\nH-2,,c\nH-3,http://Other.TEST/,c\n")
    assert list_hosts(make_spec(path)) == {"csv.test", "other.test"}


@pytest.mark.parametrize(("name", "text"), [
    ("hashed.sha256", "ab" * 32 + "\n"),
    ("hashed.csv", "sha256,id\n" + "cd" * 32 + ",X-1\n"),
])
def test_hashed_lists_name_no_hosts(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert list_hosts(make_spec(path)) is None


def test_an_unusable_list_fails_as_in_the_proxy(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("# nothing\n")
    with pytest.raises(ListError, match="no valid entries"):
        list_hosts(make_spec(path))


# --- planning --------------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "label"), [
    ("0.0.0.0", "this network"), ("10.1.2.3", "private"), ("100.64.0.1", "CGNAT"), ("127.0.0.1", "loopback"),
    ("169.254.9.9", "link-local"), ("172.31.0.1", "private"), ("192.0.0.8", "IETF protocol"),
    ("192.0.2.1", "documentation"), ("192.168.1.1", "private"), ("198.18.0.1", "benchmarking"),
    ("198.51.100.1", "documentation"), ("203.0.113.1", "documentation"), ("224.0.0.251", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "broadcast"), ("::", "unspecified"), ("::1", "loopback"),
    ("::ffff:1.2.3.4", "IPv4-mapped"), ("100::1", "discard"), ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"), ("fd00::1", "unique-local"), ("fe80::1", "link-local"),
    ("ff02::1", "multicast"),
])
def test_special_purpose_ranges(address, label):
    found = special_range(ip(address))
    assert found is not None and label in found


def test_the_most_specific_range_names_the_address():
    assert special_range(ip("::1")).startswith("::1/128 (loopback")
    assert special_range(ip("::")).startswith("::/128 (unspecified")
    assert special_range(ip("198.51.100.1"), [(net("198.51.100.0/24"), "x")]) == "198.51.100.0/24 (x)"
    assert special_range(ip("192.0.2.1"), [(net("198.51.100.0/24"), "x")]) is None


def test_plan_diverts_sorted_distinct_addresses_ipv4_first():
    plan = plan_divert({
        "b.test": [ip("198.51.100.9"), ip("2001:db8::2")],
        "a.test": [ip("198.51.100.10"), ip("198.51.100.9"), ip("2001:db8::1")],
        "c.test": [ip("::ffff:198.51.100.1")],  # IPv4-mapped: diverted as IPv4
    }, special=())
    assert [str(a) for a in plan.diverted] == ["198.51.100.1", "198.51.100.9", "198.51.100.10", "2001:db8::1",
                                               "2001:db8::2"]
    assert plan.held == () and plan.confirmed == ()
    assert len(plan.ipv4) == 3 and len(plan.ipv6) == 2


def test_special_addresses_are_held_back_with_their_names():
    plan = plan_divert({"a.test": [ip("127.0.0.1"), ip("192.0.2.7")], "b.test": [ip("127.0.0.1")]},
                       special=[(net("127.0.0.0/8"), "loopback")])
    assert [str(a) for a in plan.diverted] == ["192.0.2.7"]
    (held,) = plan.held
    assert str(held.address) == "127.0.0.1" and held.names == ("a.test", "b.test")
    assert held.reasons == ("special-purpose range 127.0.0.0/8 (loopback)",)


def test_shared_networks_are_held_back():
    shared = (SharedNetwork(net("198.51.100.0/24"), "cdn.txt:3"), SharedNetwork(net("192.0.2.5/32"), "config"))
    plan = plan_divert({"a.test": [ip("198.51.100.20")], "b.test": [ip("192.0.2.5")], "c.test": [ip("192.0.2.6")]},
                       shared=shared, special=())
    assert [str(a) for a in plan.diverted] == ["192.0.2.6"]
    assert {str(h.address): h.reasons for h in plan.held} == {
        "192.0.2.5": ("in shared network 192.0.2.5/32 (config)",),
        "198.51.100.20": ("in shared network 198.51.100.0/24 (cdn.txt:3)",),
    }


def test_an_address_shared_by_too_many_sites_is_held_back():
    shared_address = [ip("192.0.2.80")]
    hosts = {f"site{i}.test": shared_address for i in range(3)}
    hosts.update({"www.site0.test": shared_address, "own.test": [ip("192.0.2.81")]})
    plan = plan_divert(hosts, max_names_per_address=3, special=())  # www.site0 is the same site as site0
    assert [str(a) for a in plan.diverted] == ["192.0.2.80", "192.0.2.81"]
    plan = plan_divert(hosts, max_names_per_address=2, special=())
    assert [str(a) for a in plan.diverted] == ["192.0.2.81"]
    assert plan.held[0].reasons == ("3 listed sites resolve to it (more than max_names_per_address=2)",)
    assert plan.held[0].names == ("site0.test", "site1.test", "site2.test", "www.site0.test")


def test_many_shared_networks_nested_and_both_families():
    shared = [SharedNetwork(net(f"198.51.100.{i}/32"), f"host {i}") for i in range(0, 256, 2)]
    shared += [SharedNetwork(net("198.51.100.0/25"), "lower half"), SharedNetwork(net("2001:db8:0:1::/64"), "v6")]
    hosts = {f"n{i}.test": [ip(f"198.51.100.{i}")] for i in range(256)}
    hosts["v6.test"] = [ip("2001:db8:0:1::5"), ip("2001:db8:0:2::5")]
    plan = plan_divert(hosts, shared=shared, special=())
    reasons = {str(h.address): h.reasons[0] for h in plan.held}
    assert reasons["198.51.100.4"] == "in shared network 198.51.100.4/32 (host 4)"  # the most specific
    assert reasons["198.51.100.5"] == "in shared network 198.51.100.0/25 (lower half)"
    assert reasons["2001:db8:0:1::5"] == "in shared network 2001:db8:0:1::/64 (v6)"
    assert len(plan.held) == 128 + 64 + 1
    assert "198.51.100.129" in [str(a) for a in plan.diverted] and "2001:db8:0:2::5" in [str(a) for a in plan.diverted]


def test_the_worked_example_of_the_module_docstring():
    hosts = {"listed.test": [ip("198.51.100.7")], "cdn-hosted.test": [ip("203.0.113.5")]}
    shared = (SharedNetwork(net("203.0.113.0/24"), "config"),)
    plan = plan_divert(hosts, shared=shared, special=())
    assert [str(a) for a in plan.diverted] == ["198.51.100.7"]
    (held,) = plan.held
    assert (str(held.address), held.reasons, held.names) == (
        "203.0.113.5", ("in shared network 203.0.113.0/24 (config)",), ("cdn-hosted.test",))
    for confirmation in (Confirmations(networks=(net("203.0.113.5/32"),)),
                         Confirmations(names=frozenset({"cdn-hosted.test"}))):
        plan = plan_divert(hosts, shared=shared, special=(), confirmed=confirmation)
        assert [str(a) for a in plan.diverted] == ["198.51.100.7", "203.0.113.5"] and plan.held == ()


@pytest.mark.parametrize("confirmations", [
    Confirmations(networks=(net("192.0.2.1/32"),)),
    Confirmations(networks=(net("192.0.2.0/24"),)),
    Confirmations(names=frozenset({"b.test"})),
])
def test_confirmed_addresses_are_diverted(confirmations):
    plan = plan_divert({"a.test": [ip("192.0.2.1")], "b.test": [ip("192.0.2.1")]}, confirmed=confirmations)
    assert [str(a) for a in plan.diverted] == ["192.0.2.1"]
    assert [str(a) for a in plan.confirmed] == ["192.0.2.1"] and plan.held == ()


def test_a_confirmation_for_something_else_changes_nothing():
    plan = plan_divert({"a.test": [ip("192.0.2.1")]},
                       confirmed=Confirmations((net("2001:db8::/32"),), frozenset({"other.test"})))
    assert plan.diverted == () and len(plan.held) == 1


# --- side files ---------------------------------------------------------------------------------

def test_read_confirmations(tmp_path):
    path = tmp_path / "confirm.txt"
    path.write_text("# checked 2030-01-01\n192.0.2.1   # the hotline's own test host\n198.51.100.0/28\n"
                    "2001:db8::7\nWWW.Listed.TEST.\n\n3221225985\n")
    found = read_confirmations(str(path))
    assert set(found.networks) == {net("192.0.2.1/32"), net("198.51.100.0/28"), net("2001:db8::7/128"),
                                   net("192.0.2.1/32")}
    assert found.names == {"www.listed.test"}


@pytest.mark.parametrize("line", ["http://[::1", "listed.test/page.html", "user@listed.test"])
def test_a_bad_confirmation_names_file_and_line(tmp_path, line):
    path = tmp_path / "confirm.txt"
    path.write_text(f"192.0.2.1\n{line}\n")
    with pytest.raises(ConfigError, match=r"confirm.txt:2: not an address, network or host name"):
        read_confirmations(str(path))


def test_read_networks_file(tmp_path):
    path = tmp_path / "cdn.txt"
    path.write_text("# big CDN\n198.51.100.0/24 Example CDN\n2001:db8:100::/40\n")
    assert read_networks_file(str(path)) == (SharedNetwork(net("198.51.100.0/24"), "Example CDN"),
                                             SharedNetwork(net("2001:db8:100::/40"), "cdn.txt:3"))
    path.write_text("not-a-network\n")
    with pytest.raises(ConfigError, match="cdn.txt:1: not a CIDR network"):
        read_networks_file(str(path))
    with pytest.raises(ConfigError, match="cannot read"):
        read_networks_file(str(tmp_path / "missing.txt"))


# --- settings ---------------------------------------------------------------------------------

def test_settings_defaults_and_values(tmp_path):
    assert parse_export_settings(None) == ExportSettings()
    settings = parse_export_settings({
        "divert": {"max_names_per_address": 4, "shared_networks": ["198.51.100.0/24", "192.0.2.9"],
                   "shared_networks_file": "cdn.txt", "resolve_timeout": "500ms", "total_timeout": "2m",
                   "concurrency": 8, "max_unresolved": 0.25, "nft_table": "edge"},
        "snapshot": {"include_static": True},
    }, base_dir=tmp_path)
    d = settings.divert
    assert (d.max_names_per_address, d.resolve_timeout, d.total_timeout, d.concurrency, d.max_unresolved,
            d.nft_table) == (4, 0.5, 120.0, 8, 0.25, "edge")
    assert [s.network for s in d.shared_networks] == [net("198.51.100.0/24"), net("192.0.2.9/32")]
    assert d.shared_networks_file == str(tmp_path / "cdn.txt")
    assert settings.snapshot.include_static is True


@pytest.mark.parametrize(("data", "message"), [
    ({"divert": {"max_names": 3}}, "export.divert: unknown key 'max_names'"),
    ({"other": {}}, "export: unknown key 'other'"),
    ({"divert": {"max_names_per_address": 0}}, "export.divert.max_names_per_address: must be an integer"),
    ({"divert": {"max_names_per_address": True}}, "export.divert.max_names_per_address"),
    ({"divert": {"concurrency": 1000}}, "export.divert.concurrency"),
    ({"divert": {"resolve_timeout": "soon"}}, "export.divert.resolve_timeout: must be a duration"),
    ({"divert": {"total_timeout": 0}}, "export.divert.total_timeout"),
    ({"divert": {"max_unresolved": 1.5}}, "export.divert.max_unresolved: must be a fraction"),
    ({"divert": {"shared_networks": "192.0.2.0/24"}}, "export.divert.shared_networks: must be a list"),
    ({"divert": {"shared_networks": ["192.0.2.0/33"]}}, r"export.divert.shared_networks\[0\]"),
    ({"divert": {"nft_table": "my table"}}, "export.divert.nft_table"),
    ({"snapshot": {"include_static": "yes"}}, "export.snapshot.include_static: must be true or false"),
    ({"divert": []}, "export.divert: must be a mapping"),
])
def test_bad_settings_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        parse_export_settings(data)


# --- resolution --------------------------------------------------------------------------------

def test_resolve_hosts_runs_concurrency_lookups_at_a_time():
    barrier = threading.Barrier(3, timeout=5)
    inside, most = [0], [0]
    lock = threading.Lock()

    def resolver(name, timeout):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        barrier.wait()  # passes only when three lookups run at once
        with lock:
            inside[0] -= 1
        return ["192.0.2.1"]

    results = resolve_hosts([f"n{i}.test" for i in range(9)], resolver, concurrency=3, timeout=5)
    assert most[0] == 3
    assert all(r.addresses == (ip("192.0.2.1"),) for r in results.values()) and len(results) == 9


def test_resolve_hosts_stops_at_the_total_time_limit():
    now = [0.0]

    def resolver(name, timeout):
        now[0] += 10  # each lookup takes ten (fake) seconds
        return ["192.0.2.1"]

    results = resolve_hosts([f"n{i}.test" for i in range(5)], resolver, concurrency=1, timeout=5,
                            total_timeout=25, clock=lambda: now[0])
    assert [bool(results[f"n{i}.test"].addresses) for i in range(5)] == [True, True, True, False, False]
    assert results["n4.test"].error == "not resolved within the total time limit"


def test_resolve_hosts_reports_failures_per_name():
    def resolver(name, timeout):
        if name == "gone.test":
            raise OSError(-2, "Name or service not known")
        if name == "slow.test":
            raise TimeoutError("no answer within 5 s")
        if name == "broken.test":
            raise RuntimeError("resolver bug")
        return ["not an address", "192.0.2.3", "fe80::1%eth0", "192.0.2.3"]

    results = resolve_hosts(["gone.test", "slow.test", "broken.test", "ok.test"], resolver)
    assert results["gone.test"].error == "Name or service not known"
    assert results["slow.test"].error == "timed out (no answer within 5 s)"
    assert results["broken.test"].error == "resolver failed (RuntimeError)"
    assert results["ok.test"].addresses == (ip("192.0.2.3"), ip("fe80::1"))


def test_the_system_resolver_reads_getaddrinfo():
    import socket

    def getaddrinfo(name, port, family, kind):
        assert (name, port, family, kind) == ("listed.test", None, socket.AF_UNSPEC, socket.SOCK_STREAM)
        return [(socket.AF_INET, kind, 6, "", ("192.0.2.4", 0)),
                (socket.AF_INET6, kind, 6, "", ("2001:db8::4", 0, 0, 0))]

    assert SystemResolver(getaddrinfo)("listed.test", 1.0) == ["192.0.2.4", "2001:db8::4"]


def test_the_system_resolver_times_out_and_gives_up_when_lookups_pile_up():
    release = threading.Event()

    def hanging(name, *args):
        release.wait(10)
        raise OSError(-3, "Temporary failure in name resolution")

    resolver = SystemResolver(hanging, max_pending=2)
    try:
        for _ in range(2):
            with pytest.raises(TimeoutError, match="no answer within 0.05 s"):
                resolver("hung.test", 0.05)
        with pytest.raises(TimeoutError, match="not answering"):
            resolver("next.test", 5)
    finally:
        release.set()


def test_the_system_resolver_passes_errors_on():
    def failing(name, *args):
        raise OSError(-2, "Name or service not known")

    with pytest.raises(OSError, match="not known"):
        SystemResolver(failing)("gone.test", 1.0)


# --- rendering ---------------------------------------------------------------------------------

def sample_plan():
    return plan_divert({"a.test": [ip("192.0.2.2"), ip("2001:db8::2")], "b.test": [ip("192.0.2.1")],
                        "c.test": [ip("127.0.0.1")]},
                       special=[(net("127.0.0.0/8"), "loopback")])


def test_render_plain():
    text = render_plain(sample_plan(), generated="2030-01-01T00:00:00Z", source="/etc/urlwarden.yaml")
    lines = text.splitlines()
    assert lines[0] == "# urlwarden stage-1 diversion, generated 2030-01-01T00:00:00Z from /etc/urlwarden.yaml"
    assert lines[1] == ("# 2 IPv4 and 1 IPv6 destination addresses of listed hosts; 1 held back for "
                        "confirmation (see stderr).")
    assert lines[2:] == ["192.0.2.1", "192.0.2.2", "2001:db8::2"]


def test_render_nft():
    text = render_nft(sample_plan(), generated="2030-01-01T00:00:00Z", source="x.yaml", table="edge")
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == [
        "table inet edge {", "\tset urlwarden_divert4 {", "\t\ttype ipv4_addr", "\t}",
        "\tset urlwarden_divert6 {", "\t\ttype ipv6_addr", "\t}", "}",
        "flush set inet edge urlwarden_divert4", "flush set inet edge urlwarden_divert6",
        "add element inet edge urlwarden_divert4 {", "\t192.0.2.1,", "\t192.0.2.2", "}",
        "add element inet edge urlwarden_divert6 {", "\t2001:db8::2", "}",
    ]


def test_render_nft_chunks_big_sets_and_omits_empty_ones(monkeypatch):
    monkeypatch.setattr(export, "NFT_ELEMENTS_PER_STATEMENT", 2)
    plan = plan_divert({"a.test": [ip(f"192.0.2.{i}") for i in range(1, 6)]}, special=())
    text = render_nft(plan, generated="t", source="s")
    assert text.count("add element inet urlwarden urlwarden_divert4 {") == 3
    assert "urlwarden_divert6 {\n\t" not in text.split("}\n}\n", 1)[1]


def nft_namespace_reason() -> str | None:
    if os.geteuid() != 0:
        return "loading an nft script needs root (a private network namespace); not root"
    if shutil.which("nft") is None or shutil.which("unshare") is None:
        return "nft or unshare not installed (scripts/system-deps installs nftables)"
    return None


def test_the_nft_script_loads_and_replaces_the_sets(tmp_path):
    """Loaded twice with real nft in a private network namespace: the second load replaces the sets."""
    reason = nft_namespace_reason()
    if reason:
        pytest.skip(reason)
    first, second = tmp_path / "first.nft", tmp_path / "second.nft"
    first.write_text(render_nft(sample_plan(), generated="t", source="s"))
    second.write_text(render_nft(plan_divert({"a.test": [ip("198.51.100.5")]}, special=()), generated="t", source="s"))
    script = f"nft -f {first} && nft -f {first} && nft -f {second} && nft list table inet urlwarden"
    done = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "198.51.100.5" in done.stdout
    assert "192.0.2.1" not in done.stdout and "2001:db8::2" not in done.stdout


# --- export divert ------------------------------------------------------------------------------

TABLE = {
    "listed.test": ["192.0.2.10", "2001:db8::10"],
    "www.listed.test": ["192.0.2.10"],
    "paths.test": ["198.51.100.20"],
}


def divert_config(tmp_path, extra: str = "", plain: str | None = None):
    (tmp_path / "block.txt").write_text(plain if plain is not None else PLAIN.format(digest="ab" * 32))
    (tmp_path / "hashed.sha256").write_text("ab" * 32 + "\n")
    (tmp_path / "feed.txt").write_text("feed.test/\n")
    text = f"""
lists:
  - name: block
    path: block.txt
  - name: hashed
    path: hashed.sha256
  - name: hotline
    feed:
      adapter: file
      options: {{path: feed.txt}}
{extra}"""
    (tmp_path / "urlwarden.yaml").write_text(text)
    return parse_config(text, source=str(tmp_path / "urlwarden.yaml"), base_dir=tmp_path)


def run_divert(config, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    kwargs.setdefault("resolver", table_resolver(TABLE))
    code = export_divert(config, kwargs.pop("fmt", "plain"), kwargs.pop("output", None), kwargs.pop("confirm", None),
                         out=out, err=err, clock=lambda: 1900000000.0, **kwargs)
    return code, out.getvalue(), err.getvalue()


def test_export_divert_plain(tmp_path):
    calls = []
    code, out, err = run_divert(divert_config(tmp_path), resolver=table_resolver(TABLE, calls), special=())
    assert code == 0
    assert out.splitlines()[2:] == ["127.0.0.66", "192.0.2.10", "198.51.100.20", "2001:db8::10", "2001:db8::66"]
    assert out.startswith("# urlwarden stage-1 diversion, generated 2030-03-17T17:46:40Z from ")
    assert sorted(name for name, _ in calls) == ["listed.test", "paths.test", "www.listed.test"]  # no literals
    assert all(timeout == export.DEFAULT_RESOLVE_TIMEOUT for _, timeout in calls)
    assert "urlwarden: list 'hashed' is hashed: its hosts are unknown, so it cannot be exported\n" in err
    assert ("urlwarden: list 'hotline' is hashed: its hosts are unknown, so it cannot be exported (a feed's "
            "last-known-good copy is stored hashed)\n") in err
    assert "5 addresses to divert (3 IPv4, 2 IPv6) for 5 hosts of 1 lists (block)" in err


def test_export_divert_holds_back_and_takes_confirmations(tmp_path):
    config = divert_config(tmp_path)
    code, out, err = run_divert(config)
    assert code == 1
    assert [line for line in out.splitlines() if not line.startswith("#")] == []
    assert ("urlwarden: held back 192.0.2.10: special-purpose range 192.0.2.0/24 (documentation, RFC 5737); "
            "names: listed.test, www.listed.test\n") in err
    assert "5 addresses held back: traffic to them is NOT diverted" in err
    confirm = tmp_path / "confirm.txt"
    confirm.write_text("192.0.2.10\npaths.test\n2001:db8::/32\n")
    code, out, err = run_divert(config, confirm=str(confirm))
    assert code == 1  # 127.0.0.66 is still held
    assert out.splitlines()[2:] == ["192.0.2.10", "198.51.100.20", "2001:db8::10", "2001:db8::66"]
    assert "held back 127.0.0.66: special-purpose range 127.0.0.0/8" in err
    assert "4 of them confirmed by the operator" in err
    confirm.write_text("192.0.2.10\npaths.test\n2001:db8::/32\n127.0.0.66\n")
    assert run_divert(config, confirm=str(confirm))[0] == 0


def test_export_divert_shared_networks_and_threshold_from_settings(tmp_path):
    (tmp_path / "cdn.txt").write_text("198.51.100.0/24 Example CDN\n")
    settings = parse_export_settings({"divert": {"shared_networks_file": "cdn.txt", "max_names_per_address": 1,
                                                 "shared_networks": ["2001:db8::66"]}}, base_dir=tmp_path)
    table = dict(TABLE, **{"paths.test": ["198.51.100.20"], "www.listed.test": ["192.0.2.11"],
                           "listed.test": ["192.0.2.12", "2001:db8::10"]})
    plain = "listed.test/\nwww.listed.test/\npaths.test/\nhttp://[2001:db8::66]/\nother.test/\n"
    table["other.test"] = ["192.0.2.12"]
    code, out, err = run_divert(divert_config(tmp_path, plain=plain), settings=settings,
                                resolver=table_resolver(table), special=())
    assert code == 1
    assert out.splitlines()[2:] == ["192.0.2.11", "2001:db8::10"]
    assert "held back 198.51.100.20: in shared network 198.51.100.0/24 (Example CDN); names: paths.test" in err
    assert "held back 2001:db8::66: in shared network 2001:db8::66/128 (config)" in err
    assert ("held back 192.0.2.12: 2 listed sites resolve to it (more than max_names_per_address=1); "
            "names: listed.test, other.test") in err


def test_export_divert_nft_file_is_written_atomically(tmp_path):
    output = tmp_path / "out" / "divert.nft"
    output.parent.mkdir()
    code, out, _ = run_divert(divert_config(tmp_path), fmt="nft", output=str(output), special=())
    assert code == 0 and out == ""
    text = output.read_text()
    assert "add element inet urlwarden urlwarden_divert4 {\n\t127.0.0.66,\n\t192.0.2.10,\n\t198.51.100.20\n}" in text
    assert output.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in output.parent.iterdir()) == ["divert.nft"]  # no temporary file left


def test_export_divert_writes_nothing_when_the_resolver_seems_broken(tmp_path):
    output = tmp_path / "divert.txt"
    output.write_text("previous\n")
    with pytest.raises(UrlwardenError, match=r"3 of 3 names did not resolve \(more than max_unresolved=0.5; "
                                             r"first: listed.test: Name or service not known\)"):
        run_divert(divert_config(tmp_path), output=str(output), resolver=table_resolver({}))
    assert output.read_text() == "previous\n"


def test_export_divert_reports_unresolved_names(tmp_path):
    table = {k: v for k, v in TABLE.items() if k != "paths.test"}
    code, out, err = run_divert(divert_config(tmp_path), resolver=table_resolver(table), special=())
    assert code == 0
    assert "urlwarden: 1 of 3 names did not resolve and are not diverted: paths.test\n" in err
    assert "198.51.100.20" not in out


def test_export_divert_needs_a_plain_list(tmp_path):
    (tmp_path / "hashed.sha256").write_text("ab" * 32 + "\n")
    config = parse_config("lists:\n  - path: hashed.sha256\n", source="c.yaml", base_dir=tmp_path)
    with pytest.raises(UrlwardenError, match="no list can be exported for diversion"):
        run_divert(config)


def test_export_divert_through_the_command_line(tmp_path, monkeypatch, capsys):
    from urlwarden.cli import main

    divert_config(tmp_path)
    monkeypatch.setattr(export, "SystemResolver", lambda: table_resolver(TABLE))  # no real DNS
    output = tmp_path / "divert.txt"
    argv = ["export", "divert", "--config", str(tmp_path / "urlwarden.yaml"), "--output", str(output)]
    assert main(argv) == 1
    assert "held back 192.0.2.10" in capsys.readouterr().err
    (tmp_path / "ok.txt").write_text("192.0.2.0/24\n198.51.100.0/24\n2001:db8::/32\n127.0.0.66\n")
    assert main(argv + ["--confirm", str(tmp_path / "ok.txt"), "--format", "plain"]) == 0
    assert output.read_text().splitlines()[2:] == ["127.0.0.66", "192.0.2.10", "198.51.100.20", "2001:db8::10",
                                                   "2001:db8::66"]
    assert main(argv + ["--confirm", str(tmp_path / "missing.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("urlwarden: ") and "missing.txt: cannot read the confirmations" in err


# --- export snapshot -----------------------------------------------------------------------------

FEED_ENTRIES = "listed.test/\npaths.test/folder/\nwww.other.test/page.html\n"


def make_key(tmp_path: Path, name: str = "key") -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = tmp_path / f"{name}.pem", tmp_path / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def snapshot_config(tmp_path: Path, feeds=("hotline",), extra: str = ""):
    (tmp_path / "src.txt").write_text(FEED_ENTRIES)
    (tmp_path / "static.txt").write_text("static.test/\n")
    items = "".join(f"""
  - name: {name}
    format: plain
    feed:
      adapter: file
      options: {{path: src.txt}}""" for name in feeds)
    text = f"state_dir: state\nlists:{items}\n  - name: static\n    path: static.txt\n{extra}"
    (tmp_path / "urlwarden.yaml").write_text(text)
    return parse_config(text, source=str(tmp_path / "urlwarden.yaml"), base_dir=tmp_path)


def save_lkg(config, name: str = "hotline", text: str = FEED_ENTRIES, serial: str | None = "2030-01-01.1",
             with_ids: bool = False):
    if with_ids:
        spec = make_spec(f"feed:{name}", "csv", name)
        parsed = parse_text("url,id\n" + "".join(f"{line},ID-{i}\n" for i, line in enumerate(text.split())), spec)
    else:
        parsed = parse_text(text, make_spec(f"feed:{name}", "plain", name))
    LastKnownGood(config.state_dir).save(name, parsed, version=FeedVersion(etag='"e"', serial=serial),
                                         checksum=checksum(parsed), last_success=1900000000.0,
                                         feed_format="plain", config_id="x")
    return checksum(parsed)


def run_snapshot(config, directory, key=None, **kwargs):
    err = io.StringIO()
    kwargs.setdefault("clock", lambda: 1900000100.0)
    code = export_snapshot(config, str(directory), str(key) if key else None, err=err, **kwargs)
    return code, err.getvalue()


def assert_nothing_in_clear(directory: Path):
    for path in directory.iterdir():
        text = path.read_bytes().decode("utf-8", "replace")
        for host in ("listed.test", "paths.test", "other.test", "static.test"):
            assert host not in text, (path.name, host)


def test_snapshot_is_signed_verified_and_hashed(tmp_path):
    config = snapshot_config(tmp_path)
    value = save_lkg(config)
    key, public = make_key(tmp_path)
    out = tmp_path / "snap"
    code, err = run_snapshot(config, out, key)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["hotline.sha256", "hotline.sha256.sig", "index.json",
                                                     "index.json.sig"]
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in out.iterdir())
    body = (out / "hotline.sha256").read_bytes()
    assert body.startswith(f"# urlwarden-list v1 serial=2030-01-01.1 sha256={value}\n".encode())
    parsed, header = parse_full(body, "sha256", "hotline")
    assert checksum(parsed) == value == header.checksum and parsed.count == 3 and parsed.hashed
    assert parsed.host_keys is not None and len(parsed.host_keys) == 3
    verify_signature(body, (out / "hotline.sha256.sig").read_bytes(), load_public_key(str(public), "x"), "hotline")
    index_bytes = (out / "index.json").read_bytes()
    verify_signature(index_bytes, (out / "index.json.sig").read_bytes(), load_public_key(str(public), "x"), "i")
    index = json.loads(index_bytes)
    assert index["signed"] is True and index["urlwarden_snapshot"] == 1 and len(index["key_id"]) == 16
    assert index["lists"] == [{
        "name": "hotline", "source": "feed", "file": "hotline.sha256", "signature": "hotline.sha256.sig",
        "format": "sha256", "entries": 3, "checksum": value, "serial": "2030-01-01.1",
        "last_success": "2030-03-17T17:46:40Z", "bytes": len(body),
        "file_sha256": hashlib.sha256(body).hexdigest(),
    }]
    assert_nothing_in_clear(out)
    assert "feed 'hotline': 3 entries, checksum" in err and "signed ->" in err


def test_a_consumer_accepts_the_snapshot_and_rejects_a_tampered_one(tmp_path):
    """The FeedManager of another node, reading the snapshot with the file adapter and the public key."""
    config = snapshot_config(tmp_path)
    value = save_lkg(config)
    key, public = make_key(tmp_path)
    out = tmp_path / "snap"
    assert run_snapshot(config, out, key)[0] == 0
    spec = FeedSpec("hotline", "file", {"path": str(out / "hotline.sha256"),
                                        "signature_path": str(out / "hotline.sha256.sig")},
                    format="sha256", public_key=str(public))
    with FeedManager([spec], tmp_path / "consumer") as manager:
        assert manager.refresh("hotline") is True
        assert manager.status("hotline").checksum == value
        assert manager.status("hotline").version.serial == "2030-01-01.1"
        body = bytearray((out / "hotline.sha256").read_bytes())
        at = body.index(b"hashed list")
        body[at] ^= 0x01  # one byte, in a comment: only the signature can tell
        (out / "hotline.sha256").write_bytes(bytes(body))
        with pytest.raises(FeedError, match="bad signature"):
            manager.refresh("hotline")
        assert manager.status("hotline").checksum == value  # the good list stays


def test_an_unchanged_snapshot_is_not_rewritten(tmp_path):
    config = snapshot_config(tmp_path)
    save_lkg(config)
    key, _ = make_key(tmp_path)
    out = tmp_path / "snap"
    run_snapshot(config, out, key)
    names = sorted(p.name for p in out.iterdir())
    for name in names:
        os.utime(out / name, ns=(1, 1))
    assert run_snapshot(config, out, key, clock=lambda: 1900009999.0)[0] == 0  # later, nothing changed
    assert sorted(p.name for p in out.iterdir()) == names
    assert all((out / name).stat().st_mtime_ns == 1 for name in names)
    assert json.loads((out / "index.json").read_text())["generated"] == "2030-03-17T17:48:20Z"
    save_lkg(config, text=FEED_ENTRIES + "new.test/\n", serial="2030-01-01.2")
    assert run_snapshot(config, out, key, clock=lambda: 1900009999.0)[0] == 0
    assert all((out / name).stat().st_mtime_ns != 1 for name in names)
    assert json.loads((out / "index.json").read_text())["generated"] == "2030-03-17T20:33:19Z"


def test_without_a_key_the_snapshot_is_unsigned_with_a_warning(tmp_path):
    config = snapshot_config(tmp_path)
    save_lkg(config)
    key, _ = make_key(tmp_path)
    out = tmp_path / "snap"
    run_snapshot(config, out, key)
    code, err = run_snapshot(config, out)
    assert code == 0
    assert "warning: no --key given: the snapshot is NOT signed" in err
    assert sorted(p.name for p in out.iterdir()) == ["hotline.sha256", "index.json"]  # stale signatures removed
    index = json.loads((out / "index.json").read_text())
    assert index["signed"] is False and index["lists"][0]["signature"] is None


@pytest.mark.parametrize("kind", ["missing", "garbage", "encrypted", "public", "rsa"])
def test_an_unusable_key_is_an_error_and_nothing_is_written(tmp_path, kind):
    config = snapshot_config(tmp_path)
    save_lkg(config)
    key_path = tmp_path / "bad.pem"
    if kind == "garbage":
        key_path.write_text("-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n")
    elif kind == "encrypted":
        key_path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret")))
    elif kind == "public":
        key_path = make_key(tmp_path)[1]
    elif kind == "rsa":
        from cryptography.hazmat.primitives.asymmetric import ec

        key_path.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    out = tmp_path / "snap"
    with pytest.raises(UrlwardenError, match=r"--key .*nothing written"):
        run_snapshot(config, out, key_path)
    assert not out.exists()


def test_a_readable_key_gives_a_warning(tmp_path):
    config = snapshot_config(tmp_path)
    save_lkg(config)
    key, _ = make_key(tmp_path)
    key.chmod(0o644)
    code, err = run_snapshot(config, tmp_path / "snap", key)
    assert code == 0 and "is readable by other users (mode 644); chmod 600 it" in err


def test_feeds_without_a_copy_keep_their_previous_snapshot(tmp_path):
    config = snapshot_config(tmp_path, feeds=("hotline", "second"))
    save_lkg(config, "hotline")
    save_lkg(config, "second", text="second.test/\n")
    key, _ = make_key(tmp_path)
    out = tmp_path / "snap"
    assert run_snapshot(config, out, key)[0] == 0
    old_second = (out / "second.sha256").read_bytes()
    for suffix in (".sha256", ".json"):
        (Path(config.state_dir) / f"second{suffix}").unlink()
    code, err = run_snapshot(config, out, key)
    assert code == 1
    assert "feed 'second' has no last-known-good copy" in err and "its previous snapshot stays" in err
    assert (out / "second.sha256").read_bytes() == old_second
    assert [e["name"] for e in json.loads((out / "index.json").read_text())["lists"]] == ["hotline", "second"]
    (Path(config.state_dir) / "hotline.sha256").write_text("damaged\n")
    with pytest.raises(UrlwardenError, match="nothing to export"):
        run_snapshot(config, out, key)


def test_lists_no_longer_configured_are_removed(tmp_path):
    config = snapshot_config(tmp_path, feeds=("hotline", "second"))
    save_lkg(config, "hotline")
    save_lkg(config, "second", text="second.test/\n")
    key, _ = make_key(tmp_path)
    out = tmp_path / "snap"
    run_snapshot(config, out, key)
    (out / "unrelated.txt").write_text("the operator's own file\n")
    assert run_snapshot(snapshot_config(tmp_path, feeds=("hotline",)), out, key)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["hotline.sha256", "hotline.sha256.sig", "index.json",
                                                     "index.json.sig", "unrelated.txt"]


def test_a_list_with_ids_is_published_as_hashed_csv(tmp_path):
    config = snapshot_config(tmp_path)
    value = save_lkg(config, with_ids=True, serial=None)
    key, public = make_key(tmp_path)
    out = tmp_path / "snap"
    assert run_snapshot(config, out, key)[0] == 0
    body = (out / "hotline.csv").read_bytes()
    assert body.startswith(f"# urlwarden-list v1 sha256={value}\nsha256,id,category,host_sha256\n".encode())
    parsed, _ = parse_full(body, "csv", "hotline")
    assert parsed.ids is not None and checksum(parsed) == value
    verify_signature(body, (out / "hotline.csv.sig").read_bytes(), load_public_key(str(public), "x"), "hotline")
    assert_nothing_in_clear(out)


def test_static_lists_are_exported_hashed_when_asked(tmp_path):
    config = snapshot_config(tmp_path)
    save_lkg(config)
    key, _ = make_key(tmp_path)
    out = tmp_path / "snap"
    settings = parse_export_settings({"snapshot": {"include_static": True}})
    assert run_snapshot(config, out, key, settings=settings)[0] == 0
    body = (out / "static.sha256").read_bytes()
    parsed, header = parse_full(body, "sha256", "static")
    assert checksum(parsed) == header.checksum == checksum(load_list(make_spec(tmp_path / "static.txt")))
    assert {e["name"]: e["source"] for e in json.loads((out / "index.json").read_text())["lists"]} == {
        "hotline": "feed", "static": "static"}
    assert_nothing_in_clear(out)
    assert (out / "static.sha256.sig").is_file()


def test_a_stored_copy_in_clear_is_refused(tmp_path):
    config = snapshot_config(tmp_path)
    state = Path(config.state_dir)
    state.mkdir()
    (state / "hotline.csv").write_text("url,id\nlisted.test/,X-1\n")  # not what urlwarden writes: in clear
    with pytest.raises(UrlwardenError, match="nothing to export"):
        run_snapshot(config, tmp_path / "snap")
    assert not (tmp_path / "snap").exists()


def test_a_stored_copy_in_clear_is_reported(tmp_path):
    config = snapshot_config(tmp_path, feeds=("hotline", "second"))
    save_lkg(config, "second", text="second.test/\n")
    (Path(config.state_dir) / "hotline.csv").write_text("url,id\nlisted.test/,X-1\n")
    code, err = run_snapshot(config, tmp_path / "snap")
    assert code == 1 and "refusing to publish a list in clear" in err
    assert_nothing_in_clear(tmp_path / "snap")


def test_snapshot_without_feeds_is_an_error(tmp_path):
    (tmp_path / "static.txt").write_text("static.test/\n")
    config = parse_config("lists:\n  - path: static.txt\n", source="c.yaml", base_dir=tmp_path)
    with pytest.raises(UrlwardenError, match="no feeds configured"):
        run_snapshot(config, tmp_path / "snap")


def test_export_snapshot_command(tmp_path):
    config = snapshot_config(tmp_path)
    save_lkg(config)
    key, _ = make_key(tmp_path)
    done = subprocess.run([URLWARDEN, "export", "snapshot", str(tmp_path / "snap"), "--config",
                           str(tmp_path / "urlwarden.yaml"), "--key", str(key)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "snap" / "hotline.sha256.sig").exists()
    bad = subprocess.run([URLWARDEN, "export", "snapshot", str(tmp_path / "snap2"), "--config",
                          str(tmp_path / "urlwarden.yaml"), "--key", str(tmp_path / "nokey.pem")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "cannot read" in bad.stderr


def test_all_is_honest():
    assert len(export.__all__) == len(set(export.__all__))
    for name in export.__all__:
        assert hasattr(export, name), name


@pytest.mark.parametrize(("snapshot", "message"), [
    ({"timestamp_expiry": "5s"}, "tuf expiry of 'timestamp'"),
    ({"thresholds": {"mirror": 1}}, "export.snapshot.thresholds: unknown key 'mirror'"),
    ({"thresholds": {"root": 0}}, "tuf threshold of 'root'"),
    ({"every": "2h"}, "export.snapshot.every: must be a duration from 1s to 1h"),
    ({"keys_dir": 3}, "export.snapshot.keys_dir: must be a directory path"),
])
def test_bad_tuf_publisher_settings_are_refused(snapshot, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_export_settings({"snapshot": snapshot}, "/etc/urlwarden")


def test_tuf_publisher_settings(tmp_path):
    settings = parse_export_settings({"snapshot": {"keys_dir": "keys", "every": "10s", "timestamp_expiry": "2m",
                                                   "root_expiry": "400d", "thresholds": {"root": 2}}}, tmp_path)
    snap = settings.snapshot
    assert (snap.keys_dir, snap.every) == (str(tmp_path / "keys"), 10.0)
    assert snap.tuf.expiry["timestamp"] == 120.0 and snap.tuf.expiry["root"] == 400 * 86400.0
    assert snap.tuf.thresholds == {"root": 2, "targets": 1, "snapshot": 1, "timestamp": 1}



def test_key_flag_writes_the_deprecated_format_with_a_warning_and_keys_add_a_tuf_repository(tmp_path):
    from urlwarden.exports.tufrepo import init_keys

    config = snapshot_config(tmp_path)
    save_lkg(config)
    key, _public = make_key(tmp_path)
    init_keys(str(tmp_path / "tuf-keys"))
    out = tmp_path / "snap"
    err = io.StringIO()
    code = export_snapshot(config, str(out), str(key), keys_dir=str(tmp_path / "tuf-keys"), err=err)
    assert code == 0, err.getvalue()
    assert "deprecated and removed in the next release" in err.getvalue()
    names = {p.name for p in out.iterdir()}
    # one step of a migration: the old files for nodes not switched yet, the TUF repository beside them
    assert {"hotline.sha256", "hotline.sha256.sig", "index.json", "timestamp.json", "1.root.json"} <= names
    for path in (p for p in out.rglob("*") if p.is_file()):
        assert b"listed.test" not in path.read_bytes() and b"paths.test" not in path.read_bytes()


def test_every_publishes_repeatedly_and_survives_a_failed_run(tmp_path):
    from urlwarden.exports.export import export_snapshot_every
    from urlwarden.exports.tufrepo import init_keys

    config = snapshot_config(tmp_path)
    save_lkg(config)
    init_keys(str(tmp_path / "tuf-keys"))
    err = io.StringIO()
    code = export_snapshot_every(config, str(tmp_path / "repo"), 1, keys_dir=str(tmp_path / "tuf-keys"), err=err,
                                 runs=2)
    assert code == 0
    assert json.loads((tmp_path / "repo" / "timestamp.json").read_text())["signed"]["version"] == 2
    err = io.StringIO()
    code = export_snapshot_every(config, str(tmp_path / "repo"), 1, keys_dir=str(tmp_path / "no-keys"), err=err,
                                 runs=2)
    assert code == 2 and err.getvalue().count("retrying in 1 s") == 2
    with pytest.raises(UrlwardenError, match="--every: must be from 1 to 3600"):
        export_snapshot_every(config, str(tmp_path / "repo"), 0.5, keys_dir=str(tmp_path / "tuf-keys"), runs=1)
