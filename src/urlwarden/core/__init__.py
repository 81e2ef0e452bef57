"""The pure core: canonicalization, list formats, the matcher, compiled lists and snapshot files.

Nothing here does I/O on the network, holds state that changes, or imports from `urlwarden.feeds`,
`urlwarden.runtime`, `urlwarden.frontends` or `urlwarden.exports` (tests/test_layout.py checks).
"""
