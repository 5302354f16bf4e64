"""sampleapp: the protector's test package (subpackages, relative imports, data, a console script)."""

from .core import fib, greet

__version__ = "1.0"
__all__ = ["fib", "greet"]
