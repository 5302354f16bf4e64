"""The console script (entry point sampleapp.cli:main) and `python -m sampleapp`."""

import sys

from . import __version__, core
from .sub import deep


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["crash"]:
        core.crash()
    print(core.greet("world"), __version__)
    print("fib", core.fib(20))
    print("data", deep.greeting(), deep.settings()["answer"])
    print("sum", deep.total([1, 2, 3]))
    return 0
