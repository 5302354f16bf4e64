"""A device's link to a vendor's cloud account, kept in ``$LICENTIA_HOME/cloud/``.

``licentia cloud login`` links this device by its machine container (level ``medium``,
made on first use): the container signs a ``cloud-link`` document, and the session
Central gives back is kept sealed to that container (``MachineContainer.seal_local``).
A copy of ``$LICENTIA_HOME`` on another machine holds a container that does not open
there, so neither the session nor the device's key comes along: the copy is not a
second device. One file per firm: ``cloud/<firm code>.json`` (0600).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..container.files import write_atomic
from ..core import errors as E
from ..core.cloudlink import CLOUD_LINK, link_payload
from ..core.encoding import b64d, b64e

#: the binding level of the container a device links by
LEVEL = "medium"
DIR = "cloud"


@dataclass(frozen=True)
class CloudLink:
    """A device's link to one firm's cloud, as this machine keeps it."""

    path: Path
    central: str
    firm_code: int
    login: str
    device: str
    serial: str
    sealed: str

    def token(self, container: Any) -> str:
        """The session (unsealed by this machine's container; LicenseInvalid elsewhere)."""
        if container.serial != self.serial:
            raise E.LicenseInvalid(
                f"{self.path}: linked by container {self.serial}, not {container.serial}: "
                "run 'licentia cloud login' again"
            )
        token: bytes = container.unseal_local(b64d(self.sealed), _context(self.central, self.firm_code, self.login))
        return token.decode()


def _context(central: str, firm_code: int, login: str) -> bytes:
    return f"cloud session|{central}|{firm_code}|{login}".encode()


def link_document(container: Any, *, firm_code: int, name: str, now: int) -> dict[str, Any]:
    """The ``cloud-link`` document this device signs to sign in."""
    payload = link_payload(
        serial=container.serial, sign_pub=container.sign_pub, firm_code=firm_code, name=name, time=now
    )
    signed: dict[str, Any] = container.sign(CLOUD_LINK, payload)
    return signed


def save(home: Path, container: Any, *, central: str, firm_code: int, login: str, device: str, token: str) -> CloudLink:
    """Keep a new session, sealed to ``container``, replacing the firm's earlier one."""
    folder = home / DIR
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    sealed = b64e(container.seal_local(token.encode(), _context(central, firm_code, login)))
    record = {
        "central": central,
        "firm_code": firm_code,
        "login": login,
        "device": device,
        "serial": container.serial,
        "sealed": sealed,
    }
    path = folder / f"{firm_code}.json"
    write_atomic(path, json.dumps(record, indent=1, sort_keys=True).encode(), mode=0o600)
    return CloudLink(path=path, **record)


def links(home: Path) -> list[CloudLink]:
    """This machine's links, by firm code (a file that cannot be read is skipped)."""
    out = []
    folder = home / DIR
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            out.append(
                CloudLink(
                    path=path,
                    central=str(data["central"]),
                    firm_code=int(data["firm_code"]),
                    login=str(data["login"]),
                    device=str(data["device"]),
                    serial=str(data["serial"]),
                    sealed=str(data["sealed"]),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(out, key=lambda link: link.firm_code)


def forget(link: CloudLink) -> None:
    link.path.unlink(missing_ok=True)
