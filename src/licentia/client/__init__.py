"""licentia.client: the one client of License Central's REST API.

The runtime (activation, sync, deactivation), the protector (product keys), the
vendor CLI and every later caller of Central talk to it through ``CentralClient``.
It raises ``CentralUnreachable`` when Central does not answer and ``CentralRefused``
(with Central's ``status`` and ``code``) when it answers with an error; it never
exits: the CLI turns these errors into exit codes. httpx is imported on the first
call, so importing this package stays light.
"""

from ..core.errors import CentralError, CentralRefused, CentralUnreachable
from ._central import API, TIMEOUT, CentralClient

__all__ = ["API", "TIMEOUT", "CentralClient", "CentralError", "CentralRefused", "CentralUnreachable"]
