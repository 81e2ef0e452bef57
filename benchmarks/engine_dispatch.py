"""A mitmdump script: mitmproxy's event dispatch as `urlwarden run` has it.

`urlwarden run` dispatches mitmproxy's events through urlwarden.frontends.proxy.dispatch (the
same calls as mitmproxy's own dispatch, without its per-addon overhead). bench_proxy.py and
bench_bulk.py load this script into a second bare mitmdump ("bare-dispatch"), so that the cost
of urlwarden's own checks can be read on the same engine, beside the ratio against stock
mitmdump.

    mitmdump -s benchmarks/engine_dispatch.py ...
"""

from mitmproxy import ctx

from urlwarden.frontends.proxy import dispatch


def load(loader) -> None:
    if not dispatch.install(ctx.master.addons):
        raise RuntimeError("this mitmproxy's addon manager does not have the shape urlwarden's dispatch expects")
