"""The seat engine's vocabulary: clients, servable licenses, leases, refusals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.errors import LeaseRevoked as LeaseRevoked  # re-exported
from ..core.errors import LeaseUnknown as LeaseUnknown
from ..core.errors import Refusal as Refusal
from ..core.grants import MODES as MODES  # access modes a client may ask for; re-exported

if TYPE_CHECKING:  # pragma: no cover
    from ..core.license import LicenseEntry

#: the mode of a seat taken into a client's container
BORROW = "borrow"

ACTIVE = "active"  # held; renewed by heartbeats until ``expires``
LINGERING = "lingering"  # released, the seat kept until ``linger_until``
RELEASED = "released"
EXPIRED = "expired"  # the client stopped renewing (or a borrow ran out)
REVOKED = "revoked"  # released by the administrator: the client may not renew it
RETURNED = "returned"  # a borrowed seat given back
#: a borrowed seat the administrator released: still counted until the grant ends (the
#: borrowed copy keeps working) unless the borrower's return receipt arrives
LOST = "lost"
#: released (or given up) by its client without a return receipt: the seat stays counted
#: until the grace the server granted ends, or the client container's receipt arrives
GRACE = "grace"
LIVE_STATES = (ACTIVE, LINGERING)


@dataclass(frozen=True)
class Client:
    """Who asks. Everything but ``ip`` is what the client says about itself."""

    client_lease_id: str  # stable for one handle: a reconnect with it finds its own seat
    user: str = ""
    host: str = ""
    ip: str = ""
    pid: int = 0
    groups: tuple[str, ...] = ()
    holder: str | None = None  # the session's Ed25519 key, proven by the request's signature
    #: the machine it proved: "<container serial>:<key id>@<source address>" (None: it proved
    #: none and shares no station or exclusive seat, and gets no grace)
    machine: str | None = None
    #: the proven machine container's {"serial", "sign_pub"}: a grace is held there and its
    #: return receipt is checked against that key
    container: dict[str, str] | None = field(default=None, compare=False)

    @property
    def ident(self) -> str:
        return f"{self.user}@{self.host}"


@dataclass(frozen=True)
class SeatLicense:
    """One license the engine may lend seats of (the caller checked its options)."""

    key: str  # unique and stable, e.g. "<container serial>/<license id>"
    firm_code: int
    product_code: int
    license_id: int
    quantity: int  # seats; 0 = no seat limit (the only kind that allows "nolimit")
    feature_map: int = 0
    ticket: str | None = None
    text: str = ""
    valid_until: int | None = None  # caps how long a seat may be borrowed, and its grace
    max_grace: int = 0  # seconds of grace a seat may carry (the license's and the server's cap)

    @property
    def product(self) -> tuple[int, int]:
        return (self.firm_code, self.product_code)

    @classmethod
    def of_entry(cls, key: str, entry: LicenseEntry, valid_until: int | None, cap: int | None = None) -> SeatLicense:
        """A firm-signed entry as the engine sees it: its seats, its grace (the entry's
        ``max_grace``, further capped by ``cap``: the server's or the cloud's)."""
        grace = entry.options.max_grace or 0
        if cap is not None:
            grace = min(grace, cap)
        return cls(
            key=key,
            firm_code=entry.firm_code,
            product_code=entry.product_code,
            license_id=entry.license_id,
            quantity=entry.options.quantity,
            feature_map=entry.feature_map,
            ticket=entry.ticket,
            text=entry.text,
            valid_until=valid_until,
            max_grace=grace,
        )


@dataclass
class Lease:
    id: str
    client_lease_id: str
    license_key: str
    firm_code: int
    product_code: int
    license_id: int
    feature_code: int
    feature_map: int
    ticket: str | None
    mode: str
    seat: str  # leases with the same (license_key, seat) share one seat
    user: str
    host: str
    ip: str
    groups: tuple[str, ...]
    pid: int
    access_time: int
    renewed: int
    expires: int
    state: str = ACTIVE
    end_time: int | None = None
    linger_until: int | None = None
    #: the client container a borrow is taken into ({"serial", "sign_pub", "box_pub"}) or a
    #: grace is held in ({"serial", "sign_pub"})
    borrower: dict[str, Any] | None = None
    first_use: int | None = field(default=None, compare=False)
    holder: str | None = None  # the Ed25519 key that signs renewals and releases (None: an older lease)
    machine: str | None = None  # the proven machine of the client (Client.machine)
    proof_counter: int = 0  # the highest counter a renewal or release was signed with
    #: the seat stays counted until then for the grace granted with it (None: no grace, or
    #: the client container's return receipt came)
    grace_until: int | None = None

    @property
    def live_until(self) -> int:
        if self.state in (ACTIVE, LOST, GRACE):
            return max(self.expires, self.grace_until or 0)
        if self.state == LINGERING:
            return self.linger_until or 0
        return 0

    def on_grace(self, now: int) -> bool:
        """Whether only its grace keeps the seat counted now (the client gave it up or went
        silent without giving the grace back)."""
        return (
            self.grace_until is not None
            and self.grace_until > now
            and (self.state == GRACE or (self.state == ACTIVE and self.expires <= now))
        )

    def live(self, now: int) -> bool:
        return self.live_until > now

    @property
    def counted(self) -> bool:
        return self.mode != "nolimit"

    @property
    def ident(self) -> str:
        return f"{self.user}@{self.host}"

    def view(self, now: int) -> dict[str, Any]:
        """What an administrator sees of a session."""
        return {
            "lease_id": self.id,
            "license_key": self.license_key,
            "firm_code": self.firm_code,
            "product_code": self.product_code,
            "license_id": self.license_id,
            "mode": self.mode,
            "user": self.user,
            "host": self.host,
            "ip": self.ip,
            "pid": self.pid,
            "since": self.access_time,
            "expires": self.expires,
            "state": (GRACE if self.on_grace(now) else self.state) if self.live(now) else "ended",
            "borrower": (self.borrower or {}).get("serial") if self.mode == "borrow" else None,
            "machine": self.machine,
            "grace_until": self.grace_until,
        }
