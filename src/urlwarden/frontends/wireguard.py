"""WireGuard devices: key files, the client configuration a device imports, and its QR code.

mitmproxy's WireGuard mode (``--mode wireguard:KEYFILE@HOST:PORT``) serves one client key per
listener, and reads both keys from a JSON file ``{"server_key": ..., "client_key": ...}``
(base64 X25519 private keys, the format of ``wg genkey``). urlwarden gives every device its own
file and UDP port (`WireGuardConfig`: device i on the listen port + i), so two devices never
share a key: WireGuard follows a key to wherever its last packet came from, and two phones with
one key would take each other's replies.

The files are created here, before mitmproxy starts, with mode 0600 in a 0700 folder (mitmproxy
would create a missing one with the process umask): the client key in it lets any device that
has it use the tunnel. The same files answer ``urlwarden wireguard-client`` and the admin home
page.

Inside the tunnel, mitmproxy answers DNS sent to 10.0.0.53 and sees every device as 10.0.0.1
(one listener per device, so the addresses never meet); `client_config` writes those into the
wg-quick configuration the WireGuard apps import.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from urlwarden.config import Config, WireGuardConfig
from urlwarden.errors import ConfigError
from urlwarden.core.fsutil import fsync_directory

__all__ = [
    "CLIENT_ADDRESS", "TUNNEL_DNS", "Device", "Keys", "client_config", "default_route_address", "devices",
    "endpoint_for", "endpoint_is_guessed", "generate_key", "load_or_create_keys", "mode_specs",
    "public_key", "qr_svg", "qr_terminal",
]

CLIENT_ADDRESS = "10.0.0.1/32"
"""The address mitmproxy's WireGuard server expects its client to use (mitmproxy_rs routes replies there)."""
TUNNEL_DNS = "10.0.0.53"
"""DNS sent here inside the tunnel is answered by the proxy (mitmproxy's dns_resolver addon)."""
ALLOWED_IPS = "0.0.0.0/0, ::/0"
"""Everything goes through the tunnel: a device's traffic is filtered whatever it connects to."""
MAX_KEY_FILE_BYTES = 4096


@dataclass(frozen=True)
class Keys:
    server_key: str = ""
    client_key: str = ""

    def __repr__(self) -> str:  # private keys never reach a log through repr()
        return "Keys(<secret>)"


@dataclass(frozen=True)
class Device:
    """One device's WireGuard listener: its name, key file and where it listens (UDP)."""

    name: str
    keys_path: Path
    host: str
    port: int


def devices(config: Config, wireguard: WireGuardConfig | None = None) -> list[Device]:
    """Every configured device, in order, with its key file and UDP port."""
    wg = wireguard or config.wireguard
    folder = Path(wg.keys_dir) if wg.keys_dir else Path(config.state_dir) / "wireguard"
    host, port = wg.listen
    return [Device(name, folder / f"{name}.json", host, port + i) for i, name in enumerate(wg.devices)]


def mode_specs(config: Config, wireguard: WireGuardConfig | None = None) -> list[str]:
    """mitmproxy ``--mode`` values, one per device; creates missing key files first."""
    specs = []
    for device in devices(config, wireguard):
        load_or_create_keys(device.keys_path)
        specs.append(f"wireguard:{device.keys_path.resolve()}@{device.host}:{device.port}")
    return specs


def generate_key() -> str:
    """A new base64 X25519 private key, as ``wg genkey`` prints it."""
    raw = X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return base64.b64encode(raw).decode("ascii")


def public_key(private_key: str) -> str:
    """The base64 public key of a base64 X25519 private key (``wg pubkey``)."""
    try:
        raw = base64.b64decode(private_key, validate=True)
        key = X25519PrivateKey.from_private_bytes(raw)
    except ValueError:
        raise ConfigError("not a WireGuard private key (32 bytes, base64)") from None
    return base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode("ascii")


def load_or_create_keys(path: Path) -> Keys:
    """The key pair in `path` (mitmproxy's JSON format); a missing file is created first, 0600.
    ConfigError (naming the file) for an unreadable or malformed one: it is never replaced."""
    if not path.exists():
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            text = json.dumps({"server_key": generate_key(), "client_key": generate_key()}, indent=4) + "\n"
            _create_exclusively(path, text.encode("ascii"))
        except FileExistsError:
            pass  # created meanwhile (the proxy and the command at once): use that one
        except OSError as exc:
            raise ConfigError(f"{path}: cannot create the WireGuard keys: {exc.strerror or exc}") from None
    try:
        with path.open("rb") as f:
            data = json.loads(f.read(MAX_KEY_FILE_BYTES + 1)[:MAX_KEY_FILE_BYTES])
        keys = Keys(server_key=data["server_key"], client_key=data["client_key"])
        public_key(keys.server_key), public_key(keys.client_key)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the WireGuard keys: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise ConfigError(f"{path}: not a WireGuard key file ({{\"server_key\": ..., \"client_key\": ...}}): "
                          f"{type(exc).__name__}") from None
    return keys


ROUTE_PROBE_ADDRESS = "192.0.2.1"
"""A TEST-NET-1 address (RFC 5737): connecting a UDP socket to it picks the source address of the
default route without sending anything."""


def default_route_address() -> str | None:
    """This machine's IPv4 address on its default route (on a home server: its LAN address), or
    None without one. A UDP connect sends no packet; the kernel only chooses a route."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((ROUTE_PROBE_ADDRESS, 9))
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address in ("0.0.0.0", "") or address.startswith("127.") else address


def endpoint_for(config: Config, device: Device, override: tuple[str, int | None] | None = None,
                 index: int | None = None, detect: Callable[[], str | None] = default_route_address) -> str:
    """``HOST:PORT`` a device connects to: `override` (``--endpoint``), else ``wireguard.endpoint``,
    else the listen host, else (a wildcard listener) this machine's address on its default route.
    The port given in the first two is the first device's; the others follow it (the listen
    ports are consecutive; `index` is the device's position, by default its place in
    ``wireguard.devices``). ConfigError when no host is known."""
    if index is None:
        index = config.wireguard.devices.index(device.name)
    given = override or config.wireguard.endpoint
    if given is not None:
        host, port = given
        port = device.port if port is None else port + index
    elif device.host not in ("", "0.0.0.0", "::"):
        host, port = device.host, device.port
    else:
        host, port = detect(), device.port
        if host is None:
            raise ConfigError("the address devices reach this machine at is not known: set wireguard.endpoint "
                              "in the configuration, or give --endpoint HOST (e.g. 192.168.1.10)")
    if port > 65535:
        raise ConfigError(f"wireguard endpoint port {port} for device {device.name!r} is past 65535")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def endpoint_is_guessed(config: Config, device: Device, override: tuple[str, int | None] | None = None) -> bool:
    """Whether `endpoint_for` falls back to the default route's address for this device."""
    return override is None and config.wireguard.endpoint is None and device.host in ("", "0.0.0.0", "::")


def client_config(keys: Keys, endpoint: str, device_name: str = "") -> str:
    """The wg-quick configuration a WireGuard app imports (text or QR code)."""
    comment = f"# urlwarden: {device_name}\n" if device_name else ""
    return (
        f"{comment}[Interface]\n"
        f"PrivateKey = {keys.client_key}\n"
        f"Address = {CLIENT_ADDRESS}\n"
        f"DNS = {TUNNEL_DNS}\n"
        "\n"
        "[Peer]\n"
        f"PublicKey = {public_key(keys.server_key)}\n"
        f"AllowedIPs = {ALLOWED_IPS}\n"
        f"Endpoint = {endpoint}\n"
    )


def qr_terminal(text: str) -> str:
    """`text` as a QR code drawn with Unicode half blocks, for a terminal (segno)."""
    import segno

    out = io.StringIO()
    segno.make(text, error="l").terminal(out=out, compact=True, border=2)
    return out.getvalue()


def qr_svg(text: str) -> str:
    """`text` as an inline SVG QR code (no XML declaration), scaled by its viewBox (segno)."""
    import segno

    return segno.make(text, error="l").svg_inline(scale=1, border=2, omitsize=True, dark="#000", light="#fff")


def _create_exclusively(path: Path, data: bytes) -> None:
    """Write `data` to a new file `path` (mode 0600) whole or not at all; FileExistsError when it
    exists (an existing key file is never replaced: devices hold its client key)."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".urlwarden-", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(temp, path)  # unlike rename, fails when `path` exists
    finally:
        os.unlink(temp)
    fsync_directory(str(path.parent))
