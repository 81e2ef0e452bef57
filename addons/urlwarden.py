"""Thin mitmproxy entry script: ``mitmdump -s addons/urlwarden.py --set urlwarden_config=FILE``.

The addon itself lives in the installed urlwarden package (`urlwarden.frontends.proxy.addon.UrlWarden`);
``make run`` installs it into .venv.
"""

import importlib
import os
import sys

# mitmproxy puts this script's folder first on sys.path while loading it, where this file's own
# name would shadow the urlwarden package: look the package up without that folder.
_here = os.path.dirname(os.path.abspath(__file__))
_saved_path = sys.path[:]
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
try:
    UrlWarden = importlib.import_module("urlwarden.frontends.proxy.addon").UrlWarden
    TunnelGuard = importlib.import_module("urlwarden.frontends.proxy.tunnel").TunnelGuard
finally:
    sys.path[:] = _saved_path

# (Loaded as a script, TunnelGuard runs after mitmproxy's own DNS resolver: the DoH canary still
# gets NXDOMAIN, only after the resolver has looked it up. `urlwarden run` puts it first.)
addons = [UrlWarden(), TunnelGuard()]
