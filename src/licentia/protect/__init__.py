"""licentia.protect: Python packages and data files that open only with a license.

Build side (the vendor's build machine):

- ``build.protect(...)`` / ``licentia protect``: compile each module of a package (or
  a single script), encrypt its code object under the product key, write a small
  clear bootstrap;
- ``data.protect_file(...)`` / ``licentia protect-data``: encrypt data files in
  authenticated chunks.

Run side (inside the vendor's application):

- ``runtime``: the bootstrap's import hook (a ``sys.meta_path`` finder), the key
  from ``licentia.access`` (or the grace store), the audit hook;
- ``open_protected(path)``: read a protected data file chunk by chunk.

This module stays tiny: ``import licentia`` imports it, and nothing heavy is loaded
until a protected package or file is opened.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..core.errors import ProtectedDataError as ProtectedDataError  # re-exported

if TYPE_CHECKING:
    from .data import ProtectedFile


def open_protected(path: str | os.PathLike[str], *, firm_key: Any = None) -> ProtectedFile:
    """Open a file made by ``licentia protect-data`` for reading (binary, read-only, seekable).

    The key comes from ``licentia.access(...)`` for the firm, product, feature and key
    version named in the file's header, with the firm key pinned by the application
    (``licentia.trust``), by a protected package, or passed as ``firm_key``. Raises the
    ``LicenseError`` when no license opens it and ``ProtectedDataError`` when the file
    does not authenticate.
    """
    from .data import open_protected as _open

    return _open(path, firm_key=firm_key)


__all__ = ["ProtectedDataError", "open_protected"]
