"""The front ends: the mitmproxy addon and runner, the Squid helper, the admin listener.

Each turns its own protocol into calls on the runtime. Only `urlwarden.frontends.proxy` imports
mitmproxy.
"""
