"""Proxy license servers over HTTP (docs/cloud.md, "A license server as proxy").

A group's admin, signed in on a device (``Authorization: Bearer lcs_...``):

    POST   /api/v1/cloud/groups/{group}/proxies          a proxy and its one-time link code
    GET    /api/v1/cloud/groups/{group}/proxies          the group's proxies
    DELETE /api/v1/cloud/groups/{group}/proxies/{name}   remove one: its seats return

The proxy license server (``licentia server proxy link|refresh|unlink``):

    POST   /api/v1/cloud/proxy/link      the code and a sync request of the server's container
    POST   /api/v1/cloud/proxy/refresh   a sync request (Bearer lpx_...): update and grant
    GET    /api/v1/cloud/proxy/trigger   the update trigger (Bearer lpx_...)
    POST   /api/v1/cloud/proxy/unlink    end the proxy (Bearer lpx_...)
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request

from .deps import PersonDep, ProxiesDep, bearer_token, client_address
from .schemas import ProxyCreate, ProxyLink, ProxyRefresh

router = APIRouter(tags=["cloud proxies"])


def _raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


@router.post(
    "/cloud/groups/{group}/proxies",
    status_code=201,
    summary="A group's admin makes a proxy license server credential: its one-time link code (session)",
)
def create_proxy(group: str, body: ProxyCreate, person: PersonDep, svc: ProxiesDep) -> dict[str, Any]:
    return svc.create(person, group, body.name, body.seats)


@router.get("/cloud/groups/{group}/proxies", summary="A group's proxy license servers (session)")
def list_proxies(group: str, person: PersonDep, svc: ProxiesDep) -> list[dict[str, Any]]:
    return svc.list_proxies(person, group)


@router.delete("/cloud/groups/{group}/proxies/{name}", summary="Remove a proxy: its seats return (session)")
def remove_proxy(group: str, name: str, person: PersonDep, svc: ProxiesDep) -> dict[str, Any]:
    return svc.remove(person, group, name)


@router.post("/cloud/proxy/link", summary="A license server links as a proxy with its code (first refresh)")
def link_proxy(body: ProxyLink, request: Request, svc: ProxiesDep) -> dict[str, Any]:
    return svc.link(body.code, _raw(body.request), client_address(request))


@router.post("/cloud/proxy/refresh", summary="A proxy's refresh: seats held, entries and grant (Bearer lpx_...)")
def refresh_proxy(body: ProxyRefresh, request: Request, svc: ProxiesDep) -> dict[str, Any]:
    return svc.refresh(bearer_token(request), _raw(body.request), client_address(request))


@router.get("/cloud/proxy/trigger", summary="A proxy's update trigger: the digest of its group now (Bearer lpx_...)")
def proxy_trigger(request: Request, svc: ProxiesDep) -> dict[str, Any]:
    return svc.trigger(bearer_token(request))


@router.post("/cloud/proxy/unlink", summary="A proxy ends itself: its seats return (Bearer lpx_...)")
def unlink_proxy(request: Request, svc: ProxiesDep) -> dict[str, Any]:
    return svc.unlink(bearer_token(request))
