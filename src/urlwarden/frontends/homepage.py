"""The admin listener's home page (``/``): what a person wants to know at a glance.

Whether protection is on (and why not), each list with its entries, version, last successful
update and age, blocks today and since start (counts only), where the proxy and the WireGuard
listeners are, and how to add a device: the CA certificate, the PAC address and one WireGuard QR
code per device. Plain HTML and CSS (light and dark by ``prefers-color-scheme``, one column on a
phone), no script: the admin listener's Content-Security-Policy allows none.

`render_home` takes a plain dict (`HomeFacts` documents its keys) and escapes every value; the
only markup not built here is the QR code's SVG, which segno draws from the configuration text.
The page holds secrets (each device's WireGuard private key), so the admin listener serves it
under the same token rule as /status; it never holds a URL, a host name from a list, or a
client address.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Mapping, Sequence
from typing import TypedDict

from urlwarden.frontends.wireguard import qr_svg

__all__ = ["HomeFacts", "protection_state", "render_home"]


class HomeFacts(TypedDict, total=False):
    version: str
    mitmproxy_version: str
    ready: bool
    reasons: Sequence[str]  # readiness reasons ("hotline: stale", "hotline: not loaded", ...)
    started: float
    now: float
    lists: Sequence[Mapping[str, object]]  # sanitized /status list items
    missing_lists: Sequence[str]  # configured lists that are not loaded (no list yet)
    blocks_today: int
    blocks_since_start: int
    proxy: str | None  # HOST:PORT of the proxy listener
    pac_url: str | None
    ca_url: str | None
    wireguard: Sequence[Mapping[str, str]]  # name, listen, endpoint, config (wg-quick text)
    wireguard_problem: str | None  # why no client configuration can be shown


def protection_state(ready: bool, reasons: Sequence[str]) -> str:
    """"on" (ready), "degraded" (only stale lists: blocking goes on with the lists it has), or
    "off" (a list is missing or the proxy is not running)."""
    if ready:
        return "on"
    if reasons and all(r.endswith(": stale") for r in reasons):
        return "degraded"
    return "off"


_HEADLINES = {
    "on": "Protection is on",
    "degraded": "Protection is on, but a list is out of date",
    "off": "Protection is OFF",
}
_EXPLAIN = {
    "on": "Every list is loaded and up to date.",
    "degraded": "Blocking goes on with the last list that was received; newer entries are missing until the "
                "update succeeds.",
    "off": "urlwarden is not fully working. While a required list is missing, it lets nothing through.",
}

_CSS = """
:root{color-scheme:light dark;--bg:#fafafa;--fg:#1b1b1b;--muted:#5c5c5c;--card:#fff;--line:#ddd;
--ok:#1a7f37;--okbg:#e6f4ea;--warn:#9a6700;--warnbg:#fff4d6;--bad:#b42318;--badbg:#fde8e8}
@media (prefers-color-scheme:dark){:root{--bg:#131416;--fg:#e8e8e8;--muted:#a6a6a6;--card:#1d1f22;
--line:#34373b;--ok:#57d38c;--okbg:#12301f;--warn:#f2c14e;--warnbg:#3a2f0f;--bad:#ff7b72;--badbg:#3d1614}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif}
main{max-width:56rem;margin:0 auto;padding:1rem}
h1{font-size:1.4rem;margin:.2rem 0 1rem}
h2{font-size:1.1rem;margin:0 0 .6rem}
section{background:var(--card);border:1px solid var(--line);border-radius:.6rem;padding:1rem;margin:0 0 1rem}
.state{border-width:2px}
.state.on{border-color:var(--ok);background:var(--okbg)}
.state.degraded{border-color:var(--warn);background:var(--warnbg)}
.state.off{border-color:var(--bad);background:var(--badbg)}
.state h2{font-size:1.3rem}
.on h2{color:var(--ok)}.degraded h2{color:var(--warn)}.off h2{color:var(--bad)}
.counts{display:flex;gap:1rem;flex-wrap:wrap}
.count{flex:1 1 8rem}
.count b{display:block;font-size:2rem;line-height:1.1}
.muted,small{color:var(--muted)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top;overflow-wrap:anywhere}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.bad td{color:var(--bad)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0}
dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
code{font-family:ui-monospace,monospace;font-size:.9em;overflow-wrap:anywhere}
a{color:inherit}
ol{padding-left:1.3rem;margin:0}
li{margin:0 0 .8rem}
.device{display:flex;gap:1rem;flex-wrap:wrap;align-items:flex-start;margin:.6rem 0}
.qr{width:15rem;max-width:100%;background:#fff;padding:.4rem;border-radius:.4rem}
.qr svg{display:block;width:100%;height:auto}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.8rem;margin:.4rem 0 0}
@media (max-width:40rem){
 main{padding:.6rem}
 .lists thead{display:none}
 .lists tr{display:block;border-bottom:1px solid var(--line);padding:.4rem 0}
 .lists td{display:flex;justify-content:space-between;gap:1rem;border:0;padding:.15rem 0;text-align:right}
 .lists td::before{content:attr(data-label);color:var(--muted);text-align:left}
 .qr{width:100%}
}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _when(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return _dt.datetime.fromtimestamp(value, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        except (OverflowError, OSError, ValueError):
            return ""
    return ""


def _age(value: object) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        return ""
    seconds = int(value)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _count(value: object) -> str:
    return f"{value:,}".replace(",", "\u202f") if isinstance(value, int) and not isinstance(value, bool) else "0"


MAX_VERSION_CHARS = 24
_DASH = "\u2013"


def _short(value: object) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_VERSION_CHARS else text[: MAX_VERSION_CHARS - 1] + "\u2026"


def _row(cells: Sequence[tuple[str, str]], bad: bool, numeric: tuple[str, ...] = ("entries",)) -> str:
    """One table row; `cells` are (label, HTML). The labels head the cells on a narrow screen."""
    tds = "".join(f'<td data-label="{label}"{_NUMERIC if label in numeric else ""}>{content}</td>'
                  for label, content in cells)
    return f"<tr{_BAD if bad else ''}>{tds}</tr>"


_NUMERIC = ' class="n"'
_BAD = ' class="bad"'


def _list_rows(lists: Sequence[Mapping[str, object]], missing: Sequence[str]) -> str:
    rows = []
    for item in lists:
        stale, error = bool(item.get("stale")), item.get("last_error")
        state = "stale" if stale else ("update failed" if error else "ok")
        allow = " <small>(allow list)</small>" if item.get("kind") == "allow" else ""
        version = item.get("version")
        rows.append(_row((
            ("list", f"<span>{_e(item.get('name'))}{allow}</span>"),
            ("entries", _e(_count(item.get("entries")))),
            ("version", f'<span title="{_e(version)}">{_e(_short(version) or _DASH)}</span>'),
            ("last update", _e(_when(item.get("last_success")) or "never")),
            ("age", _e(_age(item.get("age_seconds")) or _DASH)),
            ("state", _e(state) + (f"<br><small>{_e(error)}</small>" if error else "")),
        ), bad=stale or bool(error)))
    for name in missing:
        rows.append(_row((("list", _e(name)), ("entries", "0"), ("version", _DASH), ("last update", "never"),
                          ("age", _DASH), ("state", "not loaded")), bad=True))
    if not rows:
        return '<tr><td colspan="6">No list is loaded: nothing is blocked.</td></tr>'
    return "".join(rows)


def _wireguard(facts: Mapping[str, object]) -> str:
    devices = facts.get("wireguard") or []
    if not devices:
        problem = facts.get("wireguard_problem")
        text = _e(problem) if problem else (
            "WireGuard is off. Start urlwarden with <code>--mode wireguard</code> (or set "
            "<code>wireguard.enabled: true</code>) to add phones and TVs that have no proxy setting.")
        return f'<li id="wireguard"><b>Phones, tablets, TVs (WireGuard app)</b>: {text}</li>'
    parts = []
    for device in devices:
        config = str(device.get("config") or "")
        parts.append(
            f'<div class="device" id="wg-{_e(device.get("name"))}">'
            f'<figure class="qr" aria-label="WireGuard QR code for {_e(device.get("name"))}" style="margin:0">'
            f"{qr_svg(config)}</figure>"
            f'<div><b>{_e(device.get("name"))}</b><br>'
            f'<small>endpoint <code>{_e(device.get("endpoint"))}</code>, listening on '
            f'<code>{_e(device.get("listen"))}</code> (UDP)</small>'
            f"<details><summary>configuration as text</summary><pre>{_e(config)}</pre></details></div></div>"
        )
    return (
        '<li id="wireguard"><b>Phones, tablets, TVs (WireGuard app)</b>: in the WireGuard app, add a tunnel '
        "from a QR code and scan the code of a device name not in use yet (each device needs its own). "
        "Everything the device sends then goes through urlwarden. " + "".join(parts) + "</li>"
    )


def render_home(facts: Mapping[str, object]) -> str:
    """The home page for `facts` (see `HomeFacts`); every value escaped."""
    reasons = [str(r) for r in facts.get("reasons") or []]
    state = protection_state(bool(facts.get("ready")), reasons)
    why = "".join(f"<li>{_e(r)}</li>" for r in reasons)
    lists = facts.get("lists") or []
    started = _when(facts.get("started"))
    addresses = [("Proxy", f"<code>{_e(facts.get('proxy'))}</code>" if facts.get("proxy") else "not listening")]
    for device in facts.get("wireguard") or []:
        addresses.append((f"WireGuard ({_e(device.get('name'))})",
                          f"<code>{_e(device.get('endpoint'))}</code> <small>(UDP, listening on "
                          f"<code>{_e(device.get('listen'))}</code>)</small>"))
    if not facts.get("wireguard"):
        addresses.append(("WireGuard", "off"))
    address_rows = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in addresses)
    ca_url, pac_url = facts.get("ca_url"), facts.get("pac_url")
    ca_item = (f'<li id="ca"><b>Every device, for block pages on HTTPS sites</b>: install and trust '
               f'<a href="{_e(ca_url)}" download="urlwarden-ca.pem">urlwarden\u2019s CA certificate</a>. Without '
               "it, listed HTTPS pages are still blocked, but the browser shows a certificate error instead "
               "of the block page.</li>") if ca_url else (
               '<li id="ca"><b>CA certificate</b>: not created yet (it appears once the proxy has started).</li>')
    pac_item = (f'<li id="pac"><b>Computers (browser or system proxy setting)</b>: the proxy auto-config '
                f"address is <code>{_e(pac_url)}</code>. Fetched from here alone, a browser goes direct while "
                "urlwarden is down: make it mandatory with a browser policy, or use <code>urlwarden pac "
                "--data-url</code> (docs/home.md, \u201cautomatic configuration with a PAC file\u201d).</li>"
                ) if pac_url else (
                '<li id="pac"><b>Computers</b>: no PAC file is served (set <code>admin.pac_proxy</code>); '
                f"use the proxy address <code>{_e(facts.get('proxy'))}</code> directly.</li>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex"><meta name="color-scheme" content="light dark">'
        f"<title>urlwarden</title><style>{_CSS}</style></head><body><main>"
        "<h1>urlwarden</h1>"
        f'<section id="protection" class="state {state}" data-state="{state}"><h2>{_HEADLINES[state]}</h2>'
        f"<p>{_EXPLAIN[state]}</p>" + (f'<ul id="reasons">{why}</ul>' if why else "") + "</section>"
        '<section id="blocks"><h2>Blocked</h2><div class="counts">'
        f'<div class="count"><b id="blocks-today">{_e(_count(facts.get("blocks_today")))}</b>today</div>'
        f'<div class="count"><b id="blocks-since-start">{_e(_count(facts.get("blocks_since_start")))}</b>'
        f"since start{f' ({_e(started)})' if started else ''}</div></div>"
        '<p class="muted"><small>Counts only: urlwarden keeps no record of which page was blocked or for '
        "whom.</small></p></section>"
        '<section id="lists"><h2>Lists</h2><table class="lists"><thead><tr><th>list</th><th>entries</th>'
        "<th>version</th><th>last update</th><th>age</th><th>state</th></tr></thead>"
        f"<tbody>{_list_rows(lists, [str(m) for m in facts.get('missing_lists') or []])}</tbody></table></section>"
        f'<section id="addresses"><h2>Addresses</h2><dl>{address_rows}</dl></section>'
        '<section id="add-device"><h2>Add a device</h2><ol>'
        f"{ca_item}{pac_item}{_wireguard(facts)}</ol></section>"
        f'<p class="muted"><small>urlwarden {_e(facts.get("version"))} \u00b7 mitmproxy '
        f'{_e(facts.get("mitmproxy_version"))}</small></p>'
        "</main></body></html>\n"
    )
