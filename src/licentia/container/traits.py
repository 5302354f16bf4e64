"""Machine traits for tolerant binding.

Each trait has a weight and says whether it carries enough entropy to make a
combination unguessable on its own. Values are encoded canonically (docs/formats.md):

    licentia-trait/1 \\0 <name> \\0 <normalized value>

where the value is stripped, lower-cased, inner white space folded to one space,
and list values (MACs) sorted and joined with ",".

Readers are plain callables returning ``{name: value}``; tests inject their own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core import hazmat
from ..core.errors import NoUsableTraits

TraitReader = Callable[[], dict[str, str]]


@dataclass(frozen=True)
class Trait:
    name: str
    weight: int
    high_entropy: bool
    source: str


TRAITS: dict[str, Trait] = {
    t.name: t
    for t in (
        Trait("machine_id", 4, True, "/etc/machine-id (or /var/lib/dbus/machine-id)"),
        Trait("root_fs_uuid", 3, True, "UUID of the file system mounted at /"),
        Trait("macs", 3, True, "MAC addresses of physical network interfaces"),
        Trait("hostname", 2, False, "host name"),
        Trait("dmi", 1, False, "DMI vendor/product/board names readable without root"),
        Trait("cpu_model", 1, False, "CPU model name from /proc/cpuinfo"),
        Trait("memory_gib", 1, False, "installed memory in GiB, rounded"),
        # not a trait of the machine: a key file standing in for all of them, where there is
        # no machine to bind to (a license server in a pod, its key a Secret)
        Trait("binding_key", 16, True, "SHA-256 of a key file (LICENTIA_SERVER_BINDING_KEY_FILE)"),
    )
}

#: the fewest bytes a binding key file holds (a random key of 256 bits)
MIN_BINDING_KEY = 32


def normalize(value: str) -> str:
    return " ".join(value.strip().lower().split())


def canonical(name: str, value: str) -> bytes:
    return b"licentia-trait/1\0" + name.encode() + b"\0" + normalize(value).encode()


def _read(path: str | Path) -> str | None:
    try:
        text = Path(path).read_text(errors="replace").strip()
    except OSError:
        return None
    return text or None


def _machine_id() -> str | None:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        value = _read(path)
        if value and set(value) != {"0"}:
            return value
    return None


def _dmi() -> str | None:
    base = Path("/sys/class/dmi/id")
    parts = [_read(base / f) for f in ("sys_vendor", "product_name", "board_vendor", "board_name")]
    if not any(parts):
        return None
    return "|".join(p or "" for p in parts)


def _cpu_model() -> str | None:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "cpu model", "uarch") and value.strip():
            return value.strip()
    return None


def _macs() -> str | None:
    macs = []
    try:
        entries = list(Path("/sys/class/net").iterdir())
    except OSError:
        return None
    for iface in entries:
        if not (iface / "device").exists():  # virtual interfaces have no device
            continue
        addr = _read(iface / "address")
        if addr and addr != "00:00:00:00:00:00":
            macs.append(addr)
    return ",".join(sorted(macs)) or None


def _root_fs_uuid() -> str | None:
    try:
        dev = os.stat("/").st_dev
        by_uuid = Path("/dev/disk/by-uuid")
        for link in by_uuid.iterdir():
            try:
                if os.stat(link).st_rdev == dev:
                    return link.name
            except OSError:
                continue
    except OSError:
        return None
    return None


def _memory_gib() -> str | None:
    text = _read("/proc/meminfo") or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            kib = int(line.split()[1])
            return str(round(kib / (1024 * 1024)))
    return None


def read_system_traits() -> dict[str, str]:
    """Whatever traits this machine has; absent ones are left out."""
    found = {
        "machine_id": _machine_id(),
        "root_fs_uuid": _root_fs_uuid(),
        "macs": _macs(),
        "hostname": socket.gethostname() or None,
        "dmi": _dmi(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
    }
    return {k: v for k, v in found.items() if v}


def key_file_traits(path: Path) -> TraitReader:
    """A trait reader that binds to the key in ``path`` instead of the machine: the one
    trait ``binding_key`` (the file's SHA-256). Whoever holds the file and the container's
    directory holds the container. NoUsableTraits when the file cannot be read, holds fewer
    than MIN_BINDING_KEY bytes, or is world-readable."""

    def read() -> dict[str, str]:
        try:
            mode = os.stat(path).st_mode
            data = Path(path).read_bytes().strip()
        except OSError as exc:
            raise NoUsableTraits(f"binding key file {path} cannot be read ({exc.strerror})") from None
        if mode & 0o004:
            raise NoUsableTraits(f"binding key file {path} is readable by everyone: make it 0600 or 0440")
        if len(data) < MIN_BINDING_KEY:
            raise NoUsableTraits(
                f"binding key file {path} holds {len(data)} bytes: it needs at least {MIN_BINDING_KEY} random bytes "
                "(e.g. 'head -c 32 /dev/urandom | base64')"
            )
        return {"binding_key": hazmat.sha256(data).hex()}

    return read
