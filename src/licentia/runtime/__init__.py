"""licentia.runtime: the SDK inside vendor applications."""

from ._runtime import Handle, Runtime, access, get_runtime, info, trust

__all__ = ["Handle", "Runtime", "access", "get_runtime", "info", "trust"]
