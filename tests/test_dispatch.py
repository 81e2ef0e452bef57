"""Unit tests for urlwarden.frontends.proxy.dispatch: the same events, in the same order, with the
same errors, as mitmproxy's own `AddonManager.trigger_event`.

The end-to-end tests run every request of `urlwarden run` through it; here it is compared with
mitmproxy's dispatch on the same addons, call by call, including nested addons, async hooks,
failing addons, AddonHalt and attributes that merely share a hook's name.
"""

from __future__ import annotations

import asyncio
import logging
import types

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import addonmanager, exceptions, hooks
from mitmproxy.addons import proxyserver
from mitmproxy.proxy.layers import http as layers_http
from mitmproxy.test import taddons, tflow
from mitmproxy.tools.dump import DumpMaster

from urlwarden.frontends.proxy import dispatch

EVENTS = ("requestheaders", "request", "response")
BEHAVIOURS = ("sync", "async", "raise", "halt", "absent", "none", "module", "not-callable")


class Probe:
    """An addon whose hook for each event behaves as told, recording every call in `calls`."""

    def __init__(self, label: str, calls: list, behaviours: dict[str, str], children: list | None = None):
        self.label = label
        if children is not None:
            self.addons = children
        for event, behaviour in behaviours.items():
            setattr(self, event, self._hook(event, behaviour, calls))

    def _hook(self, event: str, behaviour: str, calls: list):
        label = self.label

        def sync_hook(*args):
            calls.append((label, event))

        async def async_hook(*args):
            await asyncio.sleep(0)
            calls.append((label, event))

        def failing_hook(*args):
            calls.append((label, event))
            raise RuntimeError(f"{label} failed in {event}")

        def halting_hook(*args):
            calls.append((label, event))
            raise exceptions.AddonHalt()

        return {"sync": sync_hook, "async": async_hook, "raise": failing_hook, "halt": halting_hook,
                "none": None, "module": types.ModuleType("log"), "not-callable": 42}.get(behaviour, sync_hook)

    def __repr__(self) -> str:
        return f"Probe({self.label})"


def build(spec, calls: list, prefix: str = "") -> list:
    """Probes from a spec: a list of (behaviours, children spec or None)."""
    probes = []
    for index, (behaviours, children) in enumerate(spec):
        label = f"{prefix}{index}"
        kept = {event: b for event, b in behaviours.items() if b != "absent"}
        probes.append(Probe(label, calls, kept, None if children is None else build(children, calls, label + ".")))
    return probes


def run_events(spec, fast: bool, caplog) -> tuple[list, list]:
    """Every event of EVENTS through a manager holding the spec's probes: (calls, logged errors)."""
    calls: list = []
    caplog.clear()
    with taddons.context() as tctx:
        manager = addonmanager.AddonManager(tctx.master)
        if fast:
            assert dispatch.install(manager)
        for probe in build(spec, calls):
            manager.chain.append(probe)  # (not `add`: probes have no options or commands to load)
        flow = tflow.tflow(resp=True)
        events = [layers_http.HttpRequestHeadersHook(flow), layers_http.HttpRequestHook(flow),
                  layers_http.HttpResponseHook(flow)]
        with caplog.at_level(logging.ERROR, logger="mitmproxy.addonmanager"):
            for event in events:
                asyncio.run(manager.handle_lifecycle(event))
    # (the innermost frame of an addon's own error is the addon's; mitmproxy's "not callable"
    # error is raised by each dispatch's own code, so only its message and type can agree)
    errors = [(r.getMessage(), r.exc_info[0].__name__,
               None if r.exc_info[0] is exceptions.AddonManagerError else _innermost_function(r.exc_info[2]))
              for r in caplog.records if r.name == "mitmproxy.addonmanager"]
    return calls, errors


def _innermost_function(tb) -> str:
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_name


behaviours = st.fixed_dictionaries({event: st.sampled_from(BEHAVIOURS) for event in EVENTS})
specs = st.recursive(
    st.lists(st.tuples(behaviours, st.none()), max_size=4),
    lambda children: st.lists(st.tuples(behaviours, st.none() | children), max_size=4),
    max_leaves=12,
)


# (caplog is shared by the examples: run_events clears it before each run)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs)
def test_same_calls_and_errors_as_mitmproxys_dispatch(spec, caplog):
    assert run_events(spec, fast=True, caplog=caplog) == run_events(spec, fast=False, caplog=caplog)


def test_a_failing_addon_is_logged_with_its_own_frame_and_the_next_addon_still_runs(caplog):
    spec = [({"request": "raise"}, None), ({"request": "sync"}, None)]
    calls, errors = run_events(spec, fast=True, caplog=caplog)
    assert ("1", "request") in calls
    assert errors == [("Addon error: 0 failed in request", "RuntimeError", "failing_hook")]


def test_addon_halt_stops_the_event_for_the_addons_after_it(caplog):
    spec = [({"request": "halt"}, None), ({"request": "sync"}, None)]
    calls, errors = run_events(spec, fast=True, caplog=caplog)
    assert ("0", "request") in calls and ("1", "request") not in calls
    assert errors == []


def test_children_follow_their_parent_in_traverse_order(caplog):
    spec = [({"request": "sync"}, [({"request": "async"}, [({"request": "sync"}, None)]),
                                   ({"request": "sync"}, None)]),
            ({"request": "sync"}, None)]
    calls, _ = run_events(spec, fast=True, caplog=caplog)
    assert [label for label, event in calls if event == "request"] == ["0", "0.0", "0.0.0", "0.1", "1"]


def test_options_errors_propagate_as_in_mitmproxy():
    class Strict:
        def request(self, flow):
            raise exceptions.OptionsError("bad option")

    with taddons.context() as tctx:
        manager = addonmanager.AddonManager(tctx.master)
        assert dispatch.install(manager)
        manager.chain.append(Strict())
        with pytest.raises(exceptions.OptionsError):
            asyncio.run(manager.trigger_event(layers_http.HttpRequestHook(tflow.tflow())))


def test_an_addon_added_at_run_time_gets_the_next_event():
    calls = []
    with taddons.context() as tctx:
        manager = addonmanager.AddonManager(tctx.master)
        assert dispatch.install(manager)
        flow = tflow.tflow()
        asyncio.run(manager.trigger_event(hooks.UpdateHook([flow])))
        manager.chain.append(Probe("late", calls, {"update": "sync"}))
        asyncio.run(manager.trigger_event(hooks.UpdateHook([flow])))
    assert calls == [("late", "update")]


def test_mitmdumps_own_addons_see_the_same_events():
    # mitmproxy's real addon set (proxyserver, tlsconfig, save, ...) through the installed dispatch.
    async def main():
        master = DumpMaster(None, with_termlog=False, with_dumper=False)
        assert dispatch.install(master.addons)
        seen = []

        class Last:
            def requestheaders(self, flow):
                seen.append(flow.request.host)

        master.addons.add(Last())
        flow = tflow.tflow()
        await master.addons.handle_lifecycle(layers_http.HttpRequestHeadersHook(flow))
        return seen, master.addons.get("proxyserver")

    seen, server = asyncio.run(main())
    assert seen == ["address"] and isinstance(server, proxyserver.Proxyserver)


def test_install_changes_nothing_on_a_manager_of_another_shape():
    class OtherManager:
        def trigger_event(self, event):  # not a coroutine function: not mitmproxy 11's shape
            return None

    manager = OtherManager()
    assert dispatch.install(manager) is False
    assert "trigger_event" not in vars(manager)


def test_children_a_hook_adds_get_the_same_event_as_in_mitmproxy():
    # mitmproxy reads an addon's children after calling the addon's own hook (the script loader
    # adds a script's addons that way); so does the dispatch.
    def run(fast: bool) -> list:
        calls = []

        class Loader:
            def __init__(self):
                self.addons = []

            def running(self):
                calls.append("loader")
                self.addons = [Probe("child", calls, {"running": "sync"})]

        with taddons.context() as tctx:
            manager = addonmanager.AddonManager(tctx.master)
            if fast:
                assert dispatch.install(manager)
            manager.chain.append(Loader())
            asyncio.run(manager.trigger_event(hooks.RunningHook()))
        return calls

    assert run(fast=True) == run(fast=False) == ["loader", ("child", "running")]
