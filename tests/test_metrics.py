"""urlwarden.metrics: names, labels, the age gauge and today's counts, read off the exposition."""

from __future__ import annotations

import datetime as dt

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from urlwarden import metrics as metrics_module
from urlwarden.metrics import DECISION_BUCKETS, OTHER_LABEL, Metrics

T0 = dt.datetime(2030, 3, 14, 12, 0, tzinfo=dt.timezone.utc).timestamp()


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def parse(m: Metrics) -> dict[str, object]:
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def samples(m: Metrics, sample_name: str) -> dict[tuple, float]:
    """{sorted label items: value} of every sample called sample_name."""
    out = {}
    for family in parse(m).values():
        for s in family.samples:
            if s.name == sample_name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def value(m: Metrics, sample_name: str, **labels) -> float | None:
    return samples(m, sample_name).get(tuple(sorted(labels.items())))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def m(clock):
    return Metrics(version="9.9.9", mitmproxy_version="11.0.2", clock=clock, tz=dt.timezone.utc)


# --- naming -------------------------------------------------------------------------------------

EXPECTED_FAMILIES = {
    # family name (as the parser reports it): (type, label names)
    "urlwarden_requests": ("counter", {"decision"}),
    "urlwarden_blocks": ("counter", {"list"}),
    "urlwarden_allow_list_hits": ("counter", {"list"}),
    "urlwarden_list_entries": ("gauge", {"list"}),
    "urlwarden_list_last_success_timestamp_seconds": ("gauge", {"list"}),
    "urlwarden_list_update_failures": ("counter", {"list"}),
    "urlwarden_list_age_seconds": ("gauge", {"list"}),
    "urlwarden_list_version": ("gauge", {"list"}),
    "urlwarden_list_in_force_timestamp_seconds": ("gauge", {"list"}),
    "urlwarden_tls_connections": ("counter", {"action"}),
    "urlwarden_uninspected_hosts": ("counter", {"outcome"}),
    "urlwarden_refused_connections": ("counter", {"carrier"}),
    "urlwarden_internal_errors": ("counter", {"kind"}),
    "urlwarden_decision_duration_seconds": ("histogram", {"le"}),
    "urlwarden_build_info": ("gauge", {"version", "python", "mitmproxy"}),
}


def exercise(m: Metrics) -> None:
    m.list_loaded("iwf", 1200)
    m.list_loaded("exceptions", 3)
    m.list_update_failed("iwf")
    m.list_in_force("iwf", "c" * 64, "7")
    m.count_request("allow")
    m.count_request("passthrough")
    m.count_request("error")
    m.count_block("iwf")
    m.count_allow_list_hit("exceptions")
    m.count_tls("intercept")
    m.count_uninspected("refuse")
    m.count_refused_connection("tcp")
    m.count_request("bad_request")
    m.count_error("tls_clienthello")
    m.observe_decision(4e-6)


def test_every_family_has_its_type_and_labels(m):
    exercise(m)
    families = parse(m)
    for name, (kind, labels) in EXPECTED_FAMILIES.items():
        assert name in families, name
        family = families[name]
        assert family.type == kind, name
        seen = set()
        for s in family.samples:
            if not s.name.endswith("_created"):
                seen |= set(s.labels)
        assert seen == labels, name


def test_names_follow_prometheus_conventions(m):
    exercise(m)
    for family in parse(m).values():
        assert family.name.startswith("urlwarden_")
        for s in family.samples:
            if family.type == "counter":
                assert s.name.endswith(("_total", "_created")), s.name
            if "duration" in s.name or "age" in s.name:
                assert "_seconds" in s.name


def test_counters_count(m):
    exercise(m)
    assert value(m, "urlwarden_requests_total", decision="allow") == 2  # one direct, one allow-list hit
    assert value(m, "urlwarden_requests_total", decision="block") == 1
    assert value(m, "urlwarden_requests_total", decision="passthrough") == 1
    assert value(m, "urlwarden_requests_total", decision="error") == 1
    assert value(m, "urlwarden_blocks_total", list="iwf") == 1
    assert value(m, "urlwarden_allow_list_hits_total", list="exceptions") == 1
    assert value(m, "urlwarden_list_update_failures_total", list="iwf") == 1
    assert value(m, "urlwarden_tls_connections_total", action="intercept") == 1
    assert value(m, "urlwarden_uninspected_hosts_total", outcome="refuse") == 1
    assert value(m, "urlwarden_internal_errors_total", kind="tls_clienthello") == 1
    assert value(m, "urlwarden_list_entries", list="iwf") == 1200


def test_fixed_label_values_are_present_from_the_start(m):
    assert set(samples(m, "urlwarden_requests_total")) == {(("decision", d),) for d in metrics_module.DECISIONS}
    assert set(samples(m, "urlwarden_tls_connections_total")) == {(("action", a),) for a in metrics_module.TLS_ACTIONS}
    assert set(samples(m, "urlwarden_uninspected_hosts_total")) == {
        (("outcome", o),) for o in metrics_module.UNINSPECTED_OUTCOMES}


@pytest.mark.parametrize(
    ("method", "bad"),
    [("count_request", "blocked"), ("count_tls", "drop"), ("count_uninspected", "maybe")],
)
def test_unknown_fixed_label_values_are_programming_errors(m, method, bad):
    with pytest.raises(ValueError):
        getattr(m, method)(bad)


def test_build_info(m):
    (labels,) = samples(m, "urlwarden_build_info")
    info = dict(labels)
    assert info["version"] == "9.9.9" and info["mitmproxy"] == "11.0.2"
    assert info["python"].count(".") == 2
    assert value(m, "urlwarden_build_info", **info) == 1


def test_histogram_buckets_cover_a_microsecond_to_ten_milliseconds(m):
    assert DECISION_BUCKETS[0] == 1e-6 and DECISION_BUCKETS[-1] == 1e-2
    assert list(DECISION_BUCKETS) == sorted(DECISION_BUCKETS)
    m.observe_decision(3e-6)
    m.observe_decision(0.5)
    buckets = {dict(k)["le"]: v for k, v in samples(m, "urlwarden_decision_duration_seconds_bucket").items()}
    assert buckets["2.5e-06"] == 0 and buckets["5e-06"] == 1 and buckets["0.01"] == 1 and buckets["+Inf"] == 2
    assert value(m, "urlwarden_decision_duration_seconds_count") == 2


def test_own_registry_never_the_global_one(m):
    exercise(m)
    global_text = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "urlwarden_" not in global_text
    Metrics()  # a second instance does not collide with the first
    assert m.registry is not prometheus_client.REGISTRY


# --- label hygiene ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "bad_name",
    ["http://listed.test/page", "listed.test/x", "a b", "<script>", "", "x" * 65, "名前"],
)
def test_malformed_list_names_never_become_labels(m, bad_name):
    m.count_block(bad_name)
    m.count_allow_list_hit(bad_name)
    m.list_loaded(bad_name, 1)
    m.list_update_failed(bad_name)
    for sample in ("urlwarden_blocks_total", "urlwarden_allow_list_hits_total", "urlwarden_list_entries",
                   "urlwarden_list_update_failures_total", "urlwarden_list_age_seconds"):
        assert {dict(k)["list"] for k in samples(m, sample)} == {OTHER_LABEL}, sample
    assert value(m, "urlwarden_blocks_total", list=OTHER_LABEL) == 1
    assert value(m, "urlwarden_allow_list_hits_total", list=OTHER_LABEL) == 1
    assert m.blocks_today() == {OTHER_LABEL: 1}


@pytest.mark.parametrize("bad_kind", ["ValueError: http://x.test/", "Request", "a-b", "x" * 40])
def test_error_kinds_are_short_code_names(m, bad_kind):
    m.count_error(bad_kind)
    assert {dict(k)["kind"] for k in samples(m, "urlwarden_internal_errors_total")} == {OTHER_LABEL}
    assert value(m, "urlwarden_internal_errors_total", kind=OTHER_LABEL) == 1


def test_label_cardinality_is_bounded(m, monkeypatch):
    monkeypatch.setattr(metrics_module, "MAX_LISTS", 3)
    monkeypatch.setattr(metrics_module, "MAX_ERROR_KINDS", 2)
    for i in range(10):
        m.count_block(f"list{i}")
        m.count_error(f"kind{i}")
    assert len(samples(m, "urlwarden_blocks_total")) == 4  # three names and _other
    assert value(m, "urlwarden_blocks_total", list=OTHER_LABEL) == 7
    assert value(m, "urlwarden_internal_errors_total", kind=OTHER_LABEL) == 8


# --- list health --------------------------------------------------------------------------------

def test_age_is_computed_at_scrape_time_from_the_injected_clock(m, clock):
    m.list_loaded("iwf", 10)
    assert value(m, "urlwarden_list_age_seconds", list="iwf") == 0
    assert value(m, "urlwarden_list_last_success_timestamp_seconds", list="iwf") == T0
    clock.now += 3600
    assert value(m, "urlwarden_list_age_seconds", list="iwf") == 3600
    m.list_update_failed("iwf")  # a failure does not reset the age
    clock.now += 60
    assert value(m, "urlwarden_list_age_seconds", list="iwf") == 3660
    m.list_loaded("iwf", 11)
    assert value(m, "urlwarden_list_age_seconds", list="iwf") == 0
    assert value(m, "urlwarden_list_last_success_timestamp_seconds", list="iwf") == T0 + 3660


def test_list_version_and_in_force_time_move_only_when_the_content_changes(m, clock):
    m.list_in_force("fleet", "a" * 64, "3")
    assert value(m, "urlwarden_list_version", list="fleet") == 3
    assert value(m, "urlwarden_list_in_force_timestamp_seconds", list="fleet") == T0
    clock.now += 30
    m.list_in_force("fleet", "a" * 64, "3")  # confirmed, not changed: still in force since T0
    assert value(m, "urlwarden_list_in_force_timestamp_seconds", list="fleet") == T0
    m.list_in_force("fleet", "b" * 64, "4")
    assert value(m, "urlwarden_list_version", list="fleet") == 4
    assert value(m, "urlwarden_list_in_force_timestamp_seconds", list="fleet") == T0 + 30
    m.list_in_force("licensor", "c" * 64, "2030-01-01.1")  # not an integer serial: no version series
    assert value(m, "urlwarden_list_version", list="licensor") is None
    assert value(m, "urlwarden_list_in_force_timestamp_seconds", list="licensor") == T0 + 30
    m.forget_lists(["licensor"])
    assert value(m, "urlwarden_list_version", list="fleet") is None


def test_age_of_an_explicit_success_time_and_stale_lists(m, clock):
    m.list_loaded("old", 1, at=T0 - 7200)
    m.list_loaded("new", 1, at=T0 - 10)
    m.list_loaded("future", 1, at=T0 + 50)  # clock skew: never a negative age
    assert m.list_ages() == {"old": 7200, "new": 10, "future": 0}
    assert m.stale_lists(3600) == ["old"]


def test_forget_lists_drops_the_gauges_of_removed_lists(m):
    m.list_loaded("iwf", 10)
    m.list_loaded("gone", 5)
    m.count_block("gone")
    m.forget_lists(["iwf"])
    assert value(m, "urlwarden_list_entries", list="gone") is None
    assert value(m, "urlwarden_list_age_seconds", list="gone") is None
    assert value(m, "urlwarden_list_entries", list="iwf") == 10
    assert value(m, "urlwarden_blocks_total", list="gone") == 1  # counters stay


def test_lists_from_snapshot(m, tmp_path):
    from urlwarden.core.lists import load_list, make_spec
    from urlwarden.core.matcher import build

    (tmp_path / "a.txt").write_text("one.test/\ntwo.test/\n")
    (tmp_path / "ok.txt").write_text("one.test/fine\n")
    snapshot = build([load_list(make_spec(str(tmp_path / "a.txt")))], [load_list(make_spec(str(tmp_path / "ok.txt")))])
    m.list_loaded("previous", 1)
    m.lists_from_snapshot(snapshot.stats.lists)
    assert value(m, "urlwarden_list_entries", list="a") == 2
    assert value(m, "urlwarden_list_entries", list="ok") == 1
    assert value(m, "urlwarden_list_entries", list="previous") is None


# --- today's counts -----------------------------------------------------------------------------

def test_todays_counts_reset_at_midnight(m, clock):
    clock.now = dt.datetime(2030, 3, 14, 23, 59, 59, tzinfo=dt.timezone.utc).timestamp()
    m.count_block("iwf")
    m.count_block("iwf")
    m.count_block("ncmec")
    assert m.blocks_today() == {"iwf": 2, "ncmec": 1}
    assert m.today() == dt.date(2030, 3, 14)
    clock.now += 1  # midnight
    assert m.blocks_today() == {}
    assert m.today() == dt.date(2030, 3, 15)
    m.count_block("iwf")
    assert m.blocks_today() == {"iwf": 1}
    assert value(m, "urlwarden_blocks_total", list="iwf") == 3  # the counter never resets


def test_todays_counts_reset_on_the_first_block_of_a_new_day(m, clock):
    m.count_block("iwf")
    clock.now += 2 * 86400
    m.count_block("iwf")
    assert m.blocks_today() == {"iwf": 1}


def test_today_follows_the_given_time_zone(clock):
    plus_two = dt.timezone(dt.timedelta(hours=2))
    m = Metrics(clock=clock, tz=plus_two)
    clock.now = dt.datetime(2030, 3, 14, 21, 59, tzinfo=dt.timezone.utc).timestamp()  # 23:59 local
    m.count_block("iwf")
    clock.now += 60  # 00:00 local, 22:00 UTC
    assert m.blocks_today() == {}
    assert m.today() == dt.date(2030, 3, 15)


def test_local_time_zone_by_default():
    clock = Clock(dt.datetime(2030, 6, 1, 23, 59, 30).timestamp())  # naive: the host's local time
    m = Metrics(clock=clock)
    m.count_block("iwf")
    assert m.today() == dt.date(2030, 6, 1)
    clock.now += 60
    assert m.blocks_today() == {}


def test_clock_going_back_a_day_starts_a_new_count(m, clock):
    m.count_block("iwf")
    clock.now -= 86400
    assert m.blocks_today() == {}
    assert m.today() == dt.date(2030, 3, 13)


def test_refused_connections_by_carrier_and_unknown_carriers_refused(m):
    m.count_refused_connection("udp")
    m.count_refused_connection("udp")
    assert value(m, "urlwarden_refused_connections_total", carrier="udp") == 2
    assert value(m, "urlwarden_refused_connections_total", carrier="tcp") == 0
    with pytest.raises(ValueError, match="unknown carrier"):
        m.count_refused_connection("paths.test")  # never a host name as a label
