from ..core import fib as fib_again  # relative import from a subpackage
from . import helper

__all__ = ["fib_again", "helper"]
