"""The run side of a protected package: called by its clear bootstrap.

``package(globals(), config)`` (the bootstrap ``__init__.py``):

1. checks that this Python is the one the package was built for;
2. installs the audit hook that refuses to marshal protected code objects;
3. puts a finder for the package's submodules first on ``sys.meta_path``;
4. runs the package's own (encrypted) ``__init__``.

The first module decrypted asks for the key: ``licentia.access(firm, product,
feature, firm_key=<pinned in the bootstrap>)`` then ``handle.product_key(version)``
(or the grace store when the license cannot be found, or the bootstrap's own key in
IP mode). Modules are decrypted in memory and never cached as ``.pyc``.
"""

from __future__ import annotations

import importlib.machinery
import marshal
import os
import sys
import threading
from types import CodeType
from typing import Any

from ..core import errors as E
from ..core import hazmat
from ..core.encoding import b64d
from ..core.errors import ProtectedCodeError as ProtectedCodeError  # re-exported
from . import fileformat as F

#: co_filename of every protected code object loaded in this process (for the audit hook)
_protected_files: set[str] = set()
_registry: dict[str, _Finder] = {}
_hook_installed = False
_hook_lock = threading.Lock()


# ---------------------------------------------------------------- the audit hook


def _holds_protected(value: Any) -> bool:
    stack = [value]
    seen: set[int] = set()
    while stack:
        v = stack.pop()
        if isinstance(v, CodeType):
            if v.co_filename in _protected_files:
                return True
            stack.extend(v.co_consts)
        elif isinstance(v, (tuple, list, set, frozenset)) and id(v) not in seen:
            seen.add(id(v))
            stack.extend(v)
        elif isinstance(v, dict) and id(v) not in seen:
            seen.add(id(v))
            stack.extend(v.keys())
            stack.extend(v.values())
    return False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "marshal.dumps" and _protected_files and args and _holds_protected(args[0]):
        raise ProtectedCodeError("licentia: protected code objects cannot be marshalled")


def install_audit_hook() -> None:
    """Once per process (an audit hook cannot be removed)."""
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit)
            _hook_installed = True


# ---------------------------------------------------------------- packages


def _check_python(name: str, config: dict[str, Any]) -> None:
    python, tag = F.python_tag()
    if config["cache_tag"] != tag:
        raise E.ProtectedImportError(
            f"{name} was protected for Python {config['python']} ({config['cache_tag']}); this is Python {python} "
            f"({tag}): run it with Python {config['python']}, or install the build of {name} made for Python {python}",
            name=name,
        )


def _read_file(path: str) -> bytes:
    """The whole file, with the fewest system calls (this is on every protected import)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)
        if len(data) != size:  # a short read, or a file that grew: read on to the end
            parts = [data]
            while part := os.read(fd, 1 << 20):
                parts.append(part)
            data = b"".join(parts)
        return data
    finally:
        os.close(fd)


class _Protected:
    """One protected package (or script): its header, its key, its modules."""

    def __init__(self, name: str, config: dict[str, Any]):
        self.name = name  # the name it runs under
        self.built: str = config["package"]  # the name it was built under (bound in each module's AAD)
        self.config = config
        fields = F.module_header_fields(**{k: config[k] for k in _HEADER_ARGS})
        self.header = F.header_bytes(F.MODULE_MAGIC, fields)
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def key(self) -> bytes:
        key = self._key
        if key is None:
            with self._lock:
                if self._key is None:
                    self._key = self._get_key()
                key = self._key
        return key

    def _get_key(self) -> bytes:
        c = self.config
        if c["mode"] == "ip":
            return b64d(c["ip_key"])
        from ._keys import product_key

        try:
            return product_key(
                c["firm"],
                c["product"],
                c["feature"],
                c["key_version"],
                firm_key=c.get("firm_key"),
                grace=int(c.get("grace") or 0),
                label=self.name,
            )
        except E.LicenseError as exc:
            raise E.ProtectedImportError(self._license_message(exc), license_error=exc, name=self.name) from None

    def _license_message(self, exc: E.LicenseError) -> str:
        c = self.config
        what = f"firm {c['firm']}, product {c['product']}" + (f", feature {c['feature']}" if c["feature"] else "")
        return f"{self.name} needs a license ({what}): {exc}"

    def built_name(self, fullname: str) -> str:
        return self.built + fullname[len(self.name) :]

    def load_code(self, fullname: str, path: str) -> CodeType:
        try:
            data = _read_file(path)
        except OSError as exc:
            raise E.ProtectedImportError(
                f"cannot read protected module {path}: {exc}", name=fullname, path=path
            ) from None
        header = self.header
        if data[: len(header)] != header:
            raise self._foreign(data, fullname, path)
        key = self.key()
        try:
            body = memoryview(data)[len(header) :]
            raw = hazmat.aead_decrypt(key, body, F.module_aad(self.built_name(fullname), header))
        except hazmat.CryptoError:
            raise E.ProtectedImportError(
                f"{path}: this protected module is damaged or was altered (it does not authenticate as "
                f"{fullname}): reinstall {self.name}",
                name=fullname,
                path=path,
            ) from None
        try:
            code = marshal.loads(raw)  # noqa: S302 - authenticated above: only code this package encrypted
        except (ValueError, EOFError, TypeError):
            code = None
        if not isinstance(code, CodeType):
            raise E.ProtectedImportError(f"{path}: not a code object", name=fullname, path=path)
        _protected_files.add(code.co_filename)
        return code

    def _foreign(self, data: bytes, fullname: str, path: str) -> E.ProtectedImportError:
        """A module whose header is not this package's: damaged, altered, or from another build."""
        try:
            fields, _, _ = F.split_header(F.MODULE_MAGIC, data)
            mine = F.split_header(F.MODULE_MAGIC, self.header)[0]
            detail = (
                "; ".join(f"{k} {fields.get(k)!r}, expected {v!r}" for k, v in mine.items() if fields.get(k) != v)
                or "header bytes differ"
            )
        except F.FormatError as exc:
            detail = str(exc)
        return E.ProtectedImportError(
            f"{path}: this protected module does not belong to this build of {self.name} ({detail}): it is "
            f"damaged or was altered, or comes from another build; reinstall {self.name}",
            name=fullname,
            path=path,
        )


_HEADER_ARGS = ("package", "firm", "product", "feature", "key_version", "mode", "grace", "python", "cache_tag")


# ---------------------------------------------------------------- finder and loader


class ProtectedLoader(importlib.machinery.SourcelessFileLoader):
    """Loads one ``.lpy`` module: decrypt, unmarshal, exec; no source, no ``.pyc`` written.

    A ``SourcelessFileLoader`` for everything but the code itself: ``get_data``,
    ``is_package`` and the resource reader (package data) work as for any file.
    """

    def __init__(self, fullname: str, path: str, protected: _Protected):
        super().__init__(fullname, path)
        self._protected = protected

    def get_code(self, fullname: str) -> CodeType:
        return self._protected.load_code(fullname, self.path)

    def get_source(self, fullname: str) -> None:
        return None


class _Finder:
    """Finds ``<name>.lpy`` and ``<name>/__init__.lpy`` for the submodules of one package."""

    def __init__(self, protected: _Protected):
        self.protected = protected
        self.prefix = protected.name + "."
        self._listings: dict[str, frozenset[str]] = {}

    def _listing(self, directory: str) -> frozenset[str]:
        names = self._listings.get(directory)
        if names is None:
            try:
                names = frozenset(os.listdir(directory))
            except OSError:
                names = frozenset()
            self._listings[directory] = names
        return names

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(self.prefix) or path is None:
            return None
        tail = fullname.rpartition(".")[2]
        for entry in path:
            names = self._listing(entry)
            if tail in names:
                directory = os.path.join(entry, tail)
                if "__init__" + F.MODULE_SUFFIX in self._listing(directory):
                    origin = os.path.join(directory, "__init__" + F.MODULE_SUFFIX)
                    spec = importlib.machinery.ModuleSpec(
                        fullname, ProtectedLoader(fullname, origin, self.protected), origin=origin, is_package=True
                    )
                    spec.submodule_search_locations = [directory]
                    spec.has_location = True
                    return spec
            filename = tail + F.MODULE_SUFFIX
            if filename in names:
                origin = os.path.join(entry, filename)
                spec = importlib.machinery.ModuleSpec(
                    fullname, ProtectedLoader(fullname, origin, self.protected), origin=origin
                )
                spec.has_location = True
                return spec
        return None

    def invalidate_caches(self) -> None:
        self._listings.clear()


def _install_finder(protected: _Protected) -> None:
    old = _registry.get(protected.name)
    finder = _Finder(protected)
    if old is not None and old in sys.meta_path:
        sys.meta_path[sys.meta_path.index(old)] = finder
    else:
        sys.meta_path.insert(0, finder)
    _registry[protected.name] = finder


# ---------------------------------------------------------------- bootstrap entry points


def package(module_globals: dict[str, Any], config: dict[str, Any]) -> None:
    """Entry point of a protected package's bootstrap ``__init__.py``."""
    name = module_globals["__name__"]
    _check_python(name, config)
    install_audit_hook()
    protected = _Protected(name, config)
    _install_finder(protected)
    init = os.path.join(list(module_globals["__path__"])[0], "__init__" + F.MODULE_SUFFIX)
    if os.path.exists(init):
        code = protected.load_code(name, init)
        exec(code, module_globals)  # noqa: S102 - the package's own decrypted __init__, run as its import


def script(module_globals: dict[str, Any], config: dict[str, Any]) -> None:
    """Entry point of a protected script's bootstrap: decrypt ``<name>.lpy`` and run it here."""
    name = config["package"]
    _check_python(name, config)
    install_audit_hook()
    protected = _Protected(name, config)
    here = os.path.dirname(os.path.abspath(module_globals["__file__"]))
    code = protected.load_code(name, os.path.join(here, name + F.MODULE_SUFFIX))
    exec(code, module_globals)  # noqa: S102 - the decrypted script, run as the bootstrap's module
