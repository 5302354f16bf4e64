"""Fetch a product key from License Central for a build (``--central URL``).

- ``GET /api/v1/firms/{firm}/public-key?format=pem`` (no API key): the firm's public
  key(s), unless the vendor passed ``--firm-key`` (then that file is what the package
  pins, and the key document must verify against it);
- ``GET /api/v1/firms/{firm}/products/{product}/keys/{version}`` with the vendor's API
  key (``Authorization: Bearer ...``): the signed ``product-key`` document
  (``licentia.core.keyfile``).
"""

from __future__ import annotations

from typing import Any

from ..core import keyfile
from ..core.documents import DocumentInvalid

API = "/api/v1"
TIMEOUT = 30.0


class CentralError(Exception):
    """Central could not give the key; the message says what to do."""


def _get(client: Any, url: str, what: str, headers: dict[str, str] | None = None) -> Any:
    import httpx

    try:
        r = client.get(url, headers=headers or {})
    except httpx.HTTPError as exc:
        raise CentralError(
            f"cannot reach License Central for {what} ({exc.__class__.__name__}): check --central"
        ) from None
    if r.status_code >= 400:
        detail = ""
        try:
            err = r.json().get("error", {})
            detail = f": {err.get('message')} ({err.get('code')})"
        except (ValueError, AttributeError):
            pass
        raise CentralError(f"License Central refused {what} (HTTP {r.status_code}){detail}")
    return r


def fetch_product_key(
    central: str,
    api_key: str | None,
    firm: int,
    product: int,
    version: int,
    *,
    firm_pem: str | None = None,
    transport: Any = None,
) -> tuple[keyfile.ProductKey, str, dict[str, Any]]:
    """(verified key, the firm PEM to pin, the key document) from Central."""
    import httpx

    if not api_key:
        raise CentralError("no API key for License Central: set LICENTIA_API_KEY (a vendor key of the firm)")
    base = central.rstrip("/") + API
    with httpx.Client(timeout=TIMEOUT, transport=transport) as client:
        if firm_pem is None:
            firm_pem = _get(client, f"{base}/firms/{firm}/public-key?format=pem", "the firm's public key").text
        r = _get(
            client,
            f"{base}/firms/{firm}/products/{product}/keys/{version}",
            f"the product key (firm {firm}, product {product}, version {version})",
            {"Authorization": f"Bearer {api_key}"},
        )
        try:
            doc = r.json()
        except ValueError:
            raise CentralError("License Central answered something that is not a product-key document") from None
    try:
        keys = keyfile.keys_from_pem(firm_pem)
    except ValueError as exc:
        raise CentralError(f"the firm's public key is unusable: {exc}") from None
    try:
        key = keyfile.verify(doc, keys, firm_code=firm, product_code=product, version=version)
    except DocumentInvalid as exc:
        raise CentralError(f"the product key from License Central does not verify: {exc.reason}") from None
    return key, firm_pem, doc
