"""Central's services: each owns its database work; routes only call them."""

from ._base import Actor, Context, Service
from .activation import ActivationService
from .attempts import AttemptService
from .auth import ApiKeyService, AuthService
from .catalog import CatalogService
from .containers import AuditService, ContainerService
from .firms import FirmService
from .tickets import TicketService

__all__ = [
    "Actor",
    "Context",
    "Service",
    "ActivationService",
    "ApiKeyService",
    "AttemptService",
    "AuditService",
    "AuthService",
    "CatalogService",
    "ContainerService",
    "FirmService",
    "TicketService",
]
