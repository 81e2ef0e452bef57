"""The operator's own block page: a Jinja2 template named by ``operator.template``.

IWF members, for one, show wording agreed with the IWF. The template is an HTML file rendered
with autoescaping on (every value is HTML-escaped unless the template says otherwise) in
Jinja2's sandbox (no access to Python internals), with these variables:

    language        the page's language (en, de, fr), chosen from Accept-Language
    operator_name   operator.name
    reason          the list's reason in that language; none when the list gives none
    default_reason  urlwarden's own reason, translated (use it when `reason` is none)
    reference       "<list>:<entry id>", to quote in an appeal (never the URL)
    list_name       the list's name
    appeal_url, help_url, operator_url   plain http(s) links, or none
    help_text       operator.help_text in that language, or none
    status          the HTTP status sent (451 by default)

The blocked URL is not among them: no page can repeat what was asked for. The page is sent with
the same Content-Security-Policy as the built-in one: inline styles and ``data:`` images only,
no scripts, nothing loaded from elsewhere.

`load_template` reads and compiles the file and renders it once with sample values, so that a
missing file, a syntax error or an unknown variable stops start-up (or a reload) with one line
naming the file and line, e.g. ``/etc/urlwarden/block.html:12: unexpected '}'``. The result is
picklable (it travels to the process that builds the lists): it keeps the source and compiles
it again, once per process, on first use.
"""

from __future__ import annotations

import functools
import traceback
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from urlwarden.core.fsutil import read_small_text
from urlwarden.errors import ConfigError

__all__ = ["MAX_TEMPLATE_BYTES", "OperatorTemplate", "load_template"]

MAX_TEMPLATE_BYTES = 256 * 1024
"""A larger template file is refused (a block page is a few kilobytes)."""

SAMPLE_VALUES = {
    "language": "en", "operator_name": "Example operator", "reason": "Sample reason.",
    "default_reason": "Sample default reason.", "reference": "list:1", "list_name": "list",
    "appeal_url": "https://appeal.example/", "help_url": "https://help.example/",
    "operator_url": "https://operator.example/", "help_text": "Sample help.", "status": 451,
}


@dataclass(frozen=True)
class OperatorTemplate:
    path: str
    source: str

    def render(self, **values: object) -> str:
        """The page for these values (see the module docstring for their names)."""
        return _compiled(self.path, self.source).render(**values)


def _environment() -> SandboxedEnvironment:
    # StrictUndefined: a misspelt variable fails the check at start instead of showing nothing.
    return SandboxedEnvironment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                auto_reload=False, cache_size=0)


@functools.lru_cache(maxsize=8)
def _compiled(path: str, source: str) -> jinja2.Template:
    return _environment().from_string(source, globals={})


def _template_line(exc: BaseException, path: str) -> int | None:
    """The template line of a rendering error (Jinja2 rewrites tracebacks to name template lines)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename in (path, "<template>"):
            line = frame.lineno
    return line


def load_template(path: str | Path) -> OperatorTemplate:
    """Read, compile and try the template at `path`; `ConfigError` naming the file and line."""
    path = str(path)
    source = read_small_text(path, MAX_TEMPLATE_BYTES, "the block page template", ConfigError)
    environment = _environment()
    try:
        template = environment.from_string(environment.parse(source, filename=path), globals={})
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: {exc.message}") from None
    try:
        template.render(**SAMPLE_VALUES)
        template.render(**{**SAMPLE_VALUES, "reason": None, "appeal_url": None, "help_url": None,
                           "operator_url": None, "help_text": None})
    except jinja2.TemplateError as exc:
        line = _template_line(exc, path)
        raise ConfigError(f"{path}:{line or '?'}: {exc.message or type(exc).__name__}") from None
    except Exception as exc:  # e.g. a filter applied to a value of the wrong type
        line = _template_line(exc, path)
        raise ConfigError(f"{path}:{line or '?'}: {type(exc).__name__}: {exc}") from None
    return OperatorTemplate(path=path, source=source)
