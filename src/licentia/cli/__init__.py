"""The ``licentia`` command (Typer + Rich). Never imported by ``import licentia``.

``main.app`` is the command and ``main.main`` its entry point; every sub-command lives in
a module of its own (``licenses`` holds the activate/apply/deactivate/sync set that
``licentia`` and ``licentia server`` share).
"""

__all__ = ["main"]
