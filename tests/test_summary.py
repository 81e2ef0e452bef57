"""summary: the start-up lines and systemd's STATUS= line, from list statistics and feed statuses."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from urlwarden.runtime.summary import describe_lists, service_status

AT = 1900000000.0  # 2030-03-17 17:46:40 UTC


def stats(name, action="block", entries=10):
    return SimpleNamespace(name=name, action=action, entries=entries, path=f"/lists/{name}.txt", format="plain")


def feed(name, entries=5, stale=False):
    return SimpleNamespace(name=name, entries=entries, stale=stale)


@pytest.mark.parametrize(("lists", "feeds", "missing", "expected"), [
    ([], [], [], "0 block lists, 0 entries"),
    ([stats("a", entries=1)], [], [], "1 block list, 1 entry; last update 2030-03-17 17:46 UTC"),
    ([stats("a"), stats("b"), stats("ok", "allow")], [], [],
     "2 block lists, 20 entries; 1 allow list; last update 2030-03-17 17:46 UTC"),
    ([stats("a")], [feed("iwf", entries=0, stale=True)], ["iwf"],
     "REFUSING ALL REQUESTS: required feed iwf has no list yet; 1 block list, 10 entries; "
     "last update 2030-03-17 17:46 UTC"),
    ([stats("iwf")], [feed("iwf", stale=True)], [],
     "stale feed iwf; 1 block list, 10 entries; last update 2030-03-17 17:46 UTC"),
])
def test_service_status(lists, feeds, missing, expected):
    updated = None if not lists else AT
    assert service_status(lists, feeds, updated, missing) == expected


@pytest.mark.parametrize(("lists", "feeds", "missing", "expected"), [
    ([], [], [], ["no lists configured: nothing will be blocked"]),
    ([stats("a")], [], [], ["block list a: 10 entries from /lists/a.txt (plain)"]),
    ([], ["iwf"], ["iwf"], ["block feed iwf: no list yet; it is required, so every request is refused "
                            "until it has one ('urlwarden update' fetches it now)"]),
    ([], ["extra"], [], ["block feed extra: no list yet (fetched in the background)"]),
    ([stats("iwf")], ["iwf"], [], ["block list iwf: 10 entries from /lists/iwf.txt (plain)"]),
])
def test_describe_lists(lists, feeds, missing, expected):
    assert describe_lists(lists, feeds, missing) == expected
