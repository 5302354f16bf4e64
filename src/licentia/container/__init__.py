"""licentia.container: license containers behind one interface. Today: the machine container.

``Container`` and ``Grant`` (``interfaces``) are what the runtime, the license server and
the protector use; ``open_container`` opens any kind; ``files`` holds the atomic,
multi-process-safe file writes every kind (and the runtime's receipts) use.
"""

from . import files
from .binding import BindingMismatch, NoUsableTraits
from .interfaces import Container, Grant
from .machine import MachineContainer
from .slot import OBSERVE_STEP, Slot
from .store import KINDS, container_dirs, default_home, find_level, open_container, open_or_create
from .traits import TRAITS, TraitReader, read_system_traits

__all__ = [
    "KINDS",
    "OBSERVE_STEP",
    "TRAITS",
    "BindingMismatch",
    "Container",
    "Grant",
    "MachineContainer",
    "NoUsableTraits",
    "Slot",
    "TraitReader",
    "container_dirs",
    "default_home",
    "files",
    "find_level",
    "open_container",
    "open_or_create",
    "read_system_traits",
]
