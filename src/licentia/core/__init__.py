"""licentia.core: codes, the license model, signed document formats, the one exception tree. No I/O.

Modules (each other package imports them by these public names):

- ``errors``: every exception licentia raises, in one tree (``LicentiaError`` base).
- ``codes``: ticket ids, container serials, item ids, firm and product codes.
- ``license``: the license model, its options and the pure ``evaluate()`` at a given time.
- ``documents``: signed JSON documents (envelope, digest, verification).
- ``exchange``: the activation request, update, receipt and endorsement formats.
- ``grants``: what a license server signs (leases, borrows) and how a client checks them.
- ``keyfile``: a firm-signed product-key file (the protector's input).
- ``encoding``: canonical JSON and base64url.
- ``hazmat``: the cryptographic constructions under all of the above (sharp: read its docstring).

Importing the package imports none of them; ``from licentia.core import errors`` does.
"""

__all__ = [
    "codes",
    "documents",
    "encoding",
    "errors",
    "exchange",
    "grants",
    "hazmat",
    "keyfile",
    "license",
]
