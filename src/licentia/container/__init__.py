"""licentia.container: license containers. Today: the machine container."""

from .binding import BindingMismatch, NoUsableTraits
from .machine import MachineContainer, Slot
from .store import container_dirs, default_home, find_level, open_or_create
from .traits import TRAITS, read_system_traits

__all__ = [
    "BindingMismatch",
    "NoUsableTraits",
    "MachineContainer",
    "Slot",
    "TRAITS",
    "container_dirs",
    "default_home",
    "find_level",
    "open_or_create",
    "read_system_traits",
]
