"""urlwarden's own exceptions, drawn once here.

    UrlwardenError            base: the CLI prints "urlwarden: <message>" and exits 2
    ├── ListError             a list file is unreadable, not its declared format, or has no valid entry
    ├── ConfigError           the configuration file or an option is invalid
    ├── FeedError             a feed update failed (download, verification, validation); the
    │                         current list stays in force
    └── SelfCheckError        the URL canonicalizer gives wrong answers on this interpreter:
                              nothing starts (urlwarden.core.selfcheck)

Foreign exceptions (OSError, yaml, csv, UnicodeDecodeError) are translated into these at the
boundary where they happen, with the file (and line, where there is one) in the message, so
callers never see another library's errors. `canon.canonicalize` is the one exception to the
rule: like `int()` it raises plain `ValueError` for input that is not a URL.
"""

from __future__ import annotations


class UrlwardenError(Exception):
    """Base class of every error urlwarden reports to a user."""


class ListError(UrlwardenError):
    """A block or allow list could not be loaded; nothing was changed."""


class ConfigError(UrlwardenError):
    """The configuration is invalid; the running configuration (if any) stays."""


class FeedError(UrlwardenError):
    """A feed could not be updated; blocking continues with the list already loaded."""


class SelfCheckError(UrlwardenError):
    """The canonicalizer failed its start-up vectors; no front end may start."""
