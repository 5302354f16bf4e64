"""Central's services: each owns its database work; routes only call them.

A service is built with the context, one Session, and the other services it uses
as keyword arguments (``api.deps`` wires them for the HTTP API)."""

from .accounts import AccountService, Person
from .activation import ActivationService
from .attempts import AttemptService
from .auth import ApiKeyService, AuthService
from .base import Actor, Context, Service
from .catalog import CatalogService
from .cloud import CloudService
from .cloud_proxies import ProxyService
from .containers import AuditService, ContainerService
from .firms import FirmService
from .metering import MeteringService
from .signin import SignInService
from .tickets import TicketService, normalize
from .usage import UsageService

__all__ = [
    "Actor",
    "Context",
    "Person",
    "Service",
    "AccountService",
    "ActivationService",
    "ApiKeyService",
    "AttemptService",
    "AuditService",
    "AuthService",
    "CatalogService",
    "CloudService",
    "ContainerService",
    "FirmService",
    "MeteringService",
    "ProxyService",
    "SignInService",
    "TicketService",
    "UsageService",
    "normalize",
]
