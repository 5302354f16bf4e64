"""Central's HTTP layer: routes call services; wiring lives in ``deps``."""
