"""Fetch a product key from License Central for a build (``--central URL``).

- ``GET /api/v1/firms/{firm}/public-key?format=pem`` (no API key): the firm's public
  key(s), unless the vendor passed ``--firm-key`` (then that file is what the package
  pins, and the key document must verify against it);
- ``GET /api/v1/firms/{firm}/products/{product}/keys/{version}`` with the vendor's API
  key (``Authorization: Bearer ...``): the signed ``product-key`` document
  (``licentia.core.keyfile``).

Every failure is a ``CentralError`` whose message says what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..client import CentralClient, CentralError, CentralRefused, CentralUnreachable
from ..core import keyfile
from ..core.documents import DocumentInvalid

if TYPE_CHECKING:  # pragma: no cover
    import httpx

T = TypeVar("T")


def _ask(what: str, call: Callable[[], T]) -> T:
    """``call()``, its CentralError said in terms of ``what`` the build needed."""
    try:
        return call()
    except CentralUnreachable as exc:
        raise CentralUnreachable(f"{exc} given with --central (needed for {what})") from None
    except CentralRefused as exc:
        detail = f": {exc.message} ({exc.code})" if exc.code else ""
        raise CentralRefused(
            f"License Central refused {what} (HTTP {exc.status}){detail}", status=exc.status, code=exc.code
        ) from None


def fetch_product_key(
    central: str,
    api_key: str | None,
    firm: int,
    product: int,
    version: int,
    *,
    firm_pem: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> tuple[keyfile.ProductKey, str, dict[str, Any]]:
    """(verified key, the firm PEM to pin, the key document) from Central."""
    if not api_key:
        raise CentralError("no API key for License Central: set LICENTIA_API_KEY (a vendor key of the firm)")
    with CentralClient(central, api_key=api_key, transport=transport) as client:
        if firm_pem is None:
            firm_pem = _ask("the firm's public key", lambda: client.firm_public_pem(firm))
        what = f"the product key (firm {firm}, product {product}, version {version})"
        doc = _ask(what, lambda: client.product_key(firm, product, version))
    try:
        keys = keyfile.keys_from_pem(firm_pem)
    except ValueError as exc:
        raise CentralError(f"the firm's public key is unusable: {exc}") from None
    try:
        key = keyfile.verify(doc, keys, firm_code=firm, product_code=product, version=version)
    except DocumentInvalid as exc:
        raise CentralError(f"the product key from License Central does not verify: {exc.reason}") from None
    return key, firm_pem, doc
