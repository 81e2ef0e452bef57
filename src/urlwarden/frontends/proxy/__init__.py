"""The mitmproxy front end: the addon (hooks only) and `urlwarden run`. The only package that imports mitmproxy.
"""
