"""Central's HTTP layer: routes call services; wiring lives in ``deps``.

``routes`` holds the API routers and ``errors`` installs the one error handler that
maps every ``ServiceError`` to its HTTP status; ``central.app`` uses both.
"""

__all__ = ["deps", "errors", "routes", "schemas"]
