"""An example urlwarden feed adapter: a fixed, synthetic list held in memory.

A real adapter would talk to a vendor API here. What every adapter does:

* subclass `urlwarden.feeds.FeedAdapter` and take its configuration as keyword-only
  constructor options with defaults (plus ``feed_name``, which urlwarden passes);
* raise `FeedError` (via ``self.error(...)``) naming the option for a bad value, and for every
  failure in ``fetch`` -- never another library's exception, never a credential;
* return a `FeedPayload` from ``fetch(since)``, with ``not_modified=True`` when the source says
  the list is still ``since``.

Configuration (urlwarden YAML)::

    feeds:
      - name: demo
        adapter: example-static
        format: plain
        options: {entries: ["demo.test/", "demo.test/folder/"], serial: "1"}
"""

from __future__ import annotations

import hashlib

from urlwarden.feeds import FeedAdapter, FeedPayload, FeedVersion

__all__ = ["StaticAdapter"]

DEFAULT_ENTRIES = ("example-feed.test/",)


class StaticAdapter(FeedAdapter):
    """Serves `entries` as a plain list; the version's ETag is the hash of the content."""

    source = "network"

    def __init__(
        self,
        *,
        feed_name: str = "feed",
        entries: list[str] | tuple[str, ...] = DEFAULT_ENTRIES,
        serial: str | None = None,
    ):
        super().__init__(feed_name=feed_name)
        if isinstance(entries, str) or not all(isinstance(e, str) for e in entries) or not entries:
            raise self.error("option 'entries' must be a non-empty list of strings")
        self.body = ("\n".join(entries) + "\n").encode("utf-8")
        self.serial = serial

    def fetch(self, since: FeedVersion | None) -> FeedPayload:
        etag = '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'
        version = FeedVersion(etag=etag, serial=self.serial)
        if since is not None and since.etag == etag:
            return FeedPayload(body=b"", version=since, not_modified=True)
        return FeedPayload(body=self.body, version=version, content_type="text/plain")
