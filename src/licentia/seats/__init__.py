"""licentia.seats: the seat engine of network license servers (no HTTP in it).

    store = SqliteSeatStore(data / "seats.db")
    engine = SeatEngine(store, clock=clock, acl=Acl.from_toml(text), ttl=120, linger=0, signer=container.sign)
    lease = engine.acquire(client, firm_code=F, product_code=P, mode="user", candidates=[SeatLicense(...)])
    engine.renew(lease.id, client.client_lease_id); engine.release(lease.id)

The storage sits behind ``SeatStore`` (``store.py``) so that License Central can run
the same engine on its own database.
"""

from .acl import Acl, AclError, BorrowPolicy
from .engine import SeatEngine
from .model import (
    BORROW,
    MODES,
    Client,
    Lease,
    LeaseRevoked,
    LeaseUnknown,
    Refusal,
    SeatLicense,
)
from .store import SeatStore, SeatTx, SqliteSeatStore

__all__ = [
    "Acl",
    "AclError",
    "BORROW",
    "BorrowPolicy",
    "Client",
    "Lease",
    "LeaseRevoked",
    "LeaseUnknown",
    "MODES",
    "Refusal",
    "SeatEngine",
    "SeatLicense",
    "SeatStore",
    "SeatTx",
    "SqliteSeatStore",
]
