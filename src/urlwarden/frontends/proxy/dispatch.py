"""mitmproxy's hook dispatch without its per-addon overhead, for the master `urlwarden run` owns.

mitmproxy hands every event (a connection opened, request headers read, a response started...)
to every addon in its chain, 38 with mitmdump's set and urlwarden's, most of which have nothing
for that event. For each addon it creates a coroutine, two generators and a context manager:
about 60 µs an event on this project's benchmark machine, and 120 µs for a flow event, which
mitmproxy follows with an ``update`` event. A plain keep-alive request has four flow events, a
new intercepted HTTPS connection about eighteen: 0.5 ms and 2 ms of CPU that delay every first
byte and cap the request rate, with no addon doing anything.

`install` replaces `AddonManager.trigger_event` on one manager instance with `trigger_event`
below: the same walk (chain order, each addon then its children, as `traverse` visits them),
the same handling of what a hook returns (awaited when awaitable), the same errors (an addon's
exception is logged as mitmproxy logs it and the next addon runs; ``AddonHalt`` stops the event;
``OptionsError`` propagates), but with a plain loop. Nothing is cached: addons and scripts
loaded or reloaded at run time are seen at the next event, as before.

Only `urlwarden run`'s own master gets it. Under ``mitmdump -s addons/urlwarden.py`` the
operator's mitmproxy is left as it is.
"""

from __future__ import annotations

import inspect
import sys
import types

from mitmproxy import addonmanager, exceptions


def install(addons: addonmanager.AddonManager) -> bool:
    """Dispatch `addons`' events with `trigger_event`. Returns False (changing nothing) when this
    mitmproxy's addon manager does not have the shape this was written against (mitmproxy 11)."""
    stock = getattr(type(addons), "trigger_event", None)
    if (not inspect.iscoroutinefunction(stock) or not hasattr(addons, "chain")
            or not callable(getattr(addonmanager, "cut_traceback", None))
            or not hasattr(addonmanager, "logger")):
        return False
    addons.trigger_event = types.MethodType(trigger_event, addons)
    return True


async def trigger_event(self: addonmanager.AddonManager, event) -> None:
    """`AddonManager.trigger_event` (mitmproxy 11), as one loop; see the module docstring."""
    name = event.name
    args = event.args()
    for addon in self.chain:
        try:
            for target in _with_children(addon):
                func = getattr(target, name, None)
                if not func:
                    continue
                if callable(func):
                    result = func(*args)
                    if result is not None and inspect.isawaitable(result):
                        await result
                elif not isinstance(func, types.ModuleType):  # e.g. `from mitmproxy import log`
                    raise exceptions.AddonManagerError(f"Addon handler {name} ({target}) not callable")
        except exceptions.AddonHalt:
            return
        except exceptions.OptionsError:
            raise
        except Exception:
            _log_addon_error()


def _with_children(addon):
    # `traverse` itself where there are children: it reads them lazily, so children that a hook
    # adds (the script loader loading a script) get the same event, as in mitmproxy.
    if not hasattr(addon, "addons"):
        return (addon,)
    return addonmanager.traverse([addon])


def _log_addon_error() -> None:
    """What mitmproxy's `safecall` logs: the error and its traceback from the addon's frame on."""
    etype, value, tb = sys.exc_info()
    tb = addonmanager.cut_traceback(tb, "trigger_event")
    addonmanager.logger.error(f"Addon error: {value}", exc_info=(etype, value, tb))
