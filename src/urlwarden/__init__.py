"""urlwarden: a URL-blocklist filtering proxy for licensed hotline lists, built on mitmproxy.

The library (canonicalization, lists, matcher, configuration, block page) never imports
mitmproxy; only `urlwarden.frontends.proxy.addon` and `urlwarden.frontends.proxy.runner` do.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
