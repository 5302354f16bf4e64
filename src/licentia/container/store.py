"""Where containers live, and finding the one of a binding level."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..core import errors as E
from .interfaces import Container
from .machine import MachineContainer
from .traits import TraitReader

#: container kinds by the ``kind`` their container.json names
KINDS: dict[str, type[MachineContainer]] = {MachineContainer.kind: MachineContainer}


def default_home(environ: dict[str, str] | None = None) -> Path:
    """``LICENTIA_HOME``, else the user's data dir (root: /var/lib/licentia)."""
    env = os.environ if environ is None else environ
    if env.get("LICENTIA_HOME"):
        return Path(env["LICENTIA_HOME"])
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/licentia")
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "licentia"


def container_dirs(home: Path) -> list[Path]:
    root = home / "containers"
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except FileNotFoundError:
        return []


def open_container(path: Path, traits: TraitReader) -> Container:
    """Open the container in ``path``, whatever its kind (ContainerLocked when its binding does not match)."""
    try:
        meta = json.loads((path / "container.json").read_bytes())
        kind = meta.get("kind")
    except (OSError, ValueError, AttributeError) as exc:
        raise E.rejected(f"container {path.name} unreadable: {exc}") from None
    cls = KINDS.get(kind)
    if cls is None:
        raise E.rejected(f"container {path.name}: unknown kind {kind!r}")
    return cls.open(path, traits, meta=meta)


def find_level(home: Path, level: str) -> Path | None:
    for path in container_dirs(home):
        try:
            if MachineContainer.read_meta(path)["level"] == level:
                return path
        except (OSError, ValueError, KeyError):
            continue
    return None


def open_or_create(home: Path, level: str, traits: TraitReader, now: int) -> Container:
    """The machine container of ``level`` (made on first use)."""
    path = find_level(home, level)
    if path is not None:
        return MachineContainer.open(path, traits)
    from .files import locked

    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    with locked(home / ".create.lock"):
        path = find_level(home, level)
        if path is not None:
            return MachineContainer.open(path, traits)
        return MachineContainer.create(home, level, traits(), now)
