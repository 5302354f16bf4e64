"""What the seat engine's tests share: licenses, clients, and acquiring or being refused a seat."""

from __future__ import annotations

import dataclasses

import pytest

from licentia.seats import Client, Lease, Refusal, SeatEngine, SeatLicense

F, P = 10101, 1
BORROWER = {"serial": "130-AAAA-BBBB-CCCC", "sign_pub": "x", "box_pub": "y"}
#: the machine container a client with grace proves (a grace is held there)
CONTAINER = {"serial": "130-AAAA-BBBB-CCCC", "sign_pub": "k"}


def lic(key="S/1", quantity=2, license_id=1, product=P, valid_until=None) -> SeatLicense:
    return SeatLicense(
        key=key,
        firm_code=F,
        product_code=product,
        license_id=license_id,
        quantity=quantity,
        feature_map=0xFF,
        ticket="t",
        valid_until=valid_until,
    )


def cl(n=1, user="alice", host="h1", ip="10.0.0.1", groups=(), machine="") -> Client:
    """A client; unless told otherwise it proved the machine container of ``user`` on ``host``
    (one container per user and machine), seen from ``ip``."""
    proven = f"130-{user}-{host}@{ip}" if machine == "" else machine
    return Client(client_lease_id=f"c{n}", user=user, host=host, ip=ip, pid=n, groups=tuple(groups), machine=proven)


def graced(n=1, user="alice", host="h1", container=CONTAINER) -> Client:
    """``cl(n, ...)`` that also named its machine container, so that it may hold grace."""
    return dataclasses.replace(cl(n, user=user, host=host), container=dict(container))


def acquire(engine: SeatEngine, client: Client, mode="user", licenses=None, feature=0) -> Lease:
    return engine.acquire(
        client, firm_code=F, product_code=P, feature_code=feature, mode=mode, candidates=licenses or [lic()]
    )


def refused(engine: SeatEngine, client: Client, mode="user", licenses=None) -> Refusal:
    with pytest.raises(Refusal) as info:
        acquire(engine, client, mode, licenses)
    return info.value
