"""``CentralClient``: calls to License Central's REST API (``/api/v1``) over httpx.

Central answers JSON, or ``{"error": {"code", "message"}}`` with an HTTP error status.
Every failure leaves as a ``CentralError``: ``CentralUnreachable`` when no answer came
(connection refused, timeout, TLS, a malformed address), ``CentralRefused`` when Central
answered an error (its ``status``, ``code`` and message), the base class when the answer
is not what the call expects or the URL lacks its ``http://`` or ``https://``.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..core.encoding import strict_loads
from ..core.errors import CentralError, CentralRefused, CentralUnreachable

if TYPE_CHECKING:  # pragma: no cover
    import httpx

API = "/api/v1"
TIMEOUT = 30.0

Params = dict[str, str | int]


class CentralClient:
    """A client of one License Central at ``url``.

    ``api_key`` is sent as ``Authorization: Bearer ...`` (a vendor or admin key; the
    container protocol needs none). ``transport`` replaces httpx's network transport
    (tests). Use it in a ``with`` block, or call ``close()``, to free its connections.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._transport = transport
        self._http: httpx.Client | None = None

    def __enter__(self) -> CentralClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # ------------------------------------------------------------ any endpoint

    def request(
        self, method: str, path: str, *, json: Any = None, params: Params | None = None, authorized: bool = True
    ) -> Any:
        """Call ``/api/v1`` + ``path``; Central's answer as JSON (as text when it is not JSON).

        ``authorized=False`` leaves the API key out (public endpoints)."""
        response = self._send(method, path, json, params, authorized)
        if not response.headers.get("content-type", "").startswith("application/json"):
            return response.text
        try:
            return strict_loads(response.content, max_bytes=MAX_ANSWER_BYTES)
        except ValueError:
            raise CentralError("License Central sent an answer that is not JSON", status=response.status_code) from None

    def stream_text(self, method: str, path: str, *, json: Any = None, params: Params | None = None) -> Iterator[str]:
        """Call ``/api/v1`` + ``path`` and give Central's answer as text, a piece at a time
        as it arrives (a report of any length in little memory). A refusal raises before the
        first piece; an answer that breaks off raises ``CentralUnreachable``, never ends early."""
        import httpx

        url, headers = self._target(path, authorized=True)
        try:
            with self._client().stream(method, url, json=json, params=params, headers=headers) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _refusal(response)
                yield from response.iter_text()
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise CentralUnreachable(
                f"the answer of License Central at {self.url} broke off ({exc.__class__.__name__}): run it again"
            ) from exc

    # ------------------------------------------------------------ the container protocol (no API key needed)

    def ticket_info(self, ticket: str) -> dict[str, Any]:
        """What a ticket needs for activation (its binding level, ...)."""
        return _object(self.request("GET", f"/tickets/{ticket}/info"))

    def activate(self, request: dict[str, Any]) -> dict[str, Any]:
        """An activation request in, the signed update out."""
        return _object(self.request("POST", "/activations", json=request))

    def sync(self, request: dict[str, Any]) -> dict[str, Any]:
        """A sync request in, the firm's full-state update out."""
        return _object(self.request("POST", "/sync", json=request))

    def deactivate(self, receipt: dict[str, Any]) -> dict[str, Any]:
        """A container's removal receipt in, Central's confirmation out (the ticket is free again)."""
        return _object(self.request("POST", "/deactivations", json={"receipt": receipt}))

    def report(self, request: dict[str, Any]) -> dict[str, Any]:
        """A usage report in; Central's signed acknowledgement, or a full-state update, out."""
        return _object(self.request("POST", "/reports", json=request))

    def upload_usage(self, document: dict[str, Any]) -> dict[str, Any]:
        """A license server's signed usage upload in; ``{"anchor", "stored", "flagged",
        "withdrawn", "rebased"}`` out. Code ``anchor_mismatch`` (409) carries the last event
        Central anchored as the error's ``anchored_seq``."""
        return _object(self.request("POST", "/usage-uploads", json=document))

    def consume(self, document: dict[str, Any]) -> dict[str, Any]:
        """A container-signed unit consumption in (online metering); Central's signed count out."""
        return _object(self.request("POST", "/consumptions", json=document))

    # ------------------------------------------------------------ keys

    def firm_public_pem(self, firm: int) -> str:
        """The firm's public signing key(s) as PEM (a public endpoint: no API key is sent)."""
        return self._send("GET", f"/firms/{firm}/public-key", None, {"format": "pem"}, authorized=False).text

    def product_key(self, firm: int, product: int, version: int) -> dict[str, Any]:
        """The firm-signed ``product-key`` document of one product key version (vendor key)."""
        answer = self.request("GET", f"/firms/{firm}/products/{product}/keys/{version}")
        return _object(answer, expected="a product-key document")

    # ------------------------------------------------------------ transport and errors

    def _client(self) -> httpx.Client:
        if self._http is None:
            import httpx

            self._http = httpx.Client(timeout=self.timeout, transport=self._transport)
        return self._http

    def _target(self, path: str, authorized: bool) -> tuple[str, dict[str, str]]:
        """The URL of ``path`` and the request's headers."""
        if not self.url.lower().startswith(("http://", "https://")):
            example = f": give http://{self.url} (or https://...)" if "://" not in self.url else ""
            raise CentralError(f"License Central's URL {self.url!r} must start with http:// or https://{example}")
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key and authorized else {}
        return self.url + API + path, headers

    def _send(self, method: str, path: str, json: Any, params: Params | None, authorized: bool) -> httpx.Response:
        import httpx

        url, headers = self._target(path, authorized)
        try:
            response = self._client().request(method, url, json=json, params=params, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise CentralUnreachable(
                f"cannot reach License Central at {self.url} ({exc.__class__.__name__}): check the address"
            ) from exc
        if response.status_code >= 400:
            raise _refusal(response)
        return response


#: the largest answer read from License Central (an update holds documents of at most 4 MiB)
MAX_ANSWER_BYTES = 16 * 1024 * 1024


def _refusal(response: httpx.Response) -> CentralRefused:
    """Central's ``{"error": {"code", "message"}}`` as an exception (any other body: the status alone)."""
    status = response.status_code
    try:
        body = strict_loads(response.content, max_bytes=MAX_ANSWER_BYTES)
        error = body.get("error")
    except (ValueError, AttributeError):
        body, error = {}, None
    if not isinstance(error, dict):
        error = {}
    message, code = error.get("message"), error.get("code")
    refused = CentralRefused(
        str(message) if message else f"License Central answered HTTP {status}",
        status=status,
        code=str(code) if code else None,
    )
    # the anchored sequence, beside the error or in it
    seq = error.get("anchored_seq", body.get("anchored_seq"))
    if type(seq) is int and seq >= 0:
        refused.anchored_seq = seq
    return refused


def _object(answer: Any, *, expected: str = "JSON") -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise CentralError(f"License Central sent an answer that is not {expected}")
    return answer
