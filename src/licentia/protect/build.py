"""The build side of ``licentia protect``: compile, encrypt, write the clear bootstrap.

A package directory ``SRC/<name>`` becomes ``OUT/<name>``: every ``.py`` file is
compiled and written as ``.lpy`` (header + AES-256-GCM over the marshalled code
object, the module's dotted name and the header bound as associated data); every
other file (package data) is copied; ``__init__.py`` is the bootstrap. A single
script ``SRC/<name>.py`` becomes ``OUT/<name>.py`` (bootstrap) and ``OUT/<name>.lpy``.

The product key is used in memory only; in IP mode a fresh key is made for the build
and written into the bootstrap (which is why IP mode only stops casual reading).
"""

from __future__ import annotations

import fnmatch
import marshal
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import codes, hazmat
from ..core.encoding import b64e
from ..core.errors import BuildError as BuildError  # re-exported
from . import fileformat as F

SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class BuildResult:
    output: Path  # the package directory or the bootstrap script written
    kind: str  # "package" or "script"
    modules: int
    data_files: int
    python: str
    mode: str


def _identifier(name: str, what: Path) -> str:
    if not name.isidentifier():
        raise BuildError(f"{what}: {name!r} is not a valid Python module name")
    return name


def protect(
    src: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    firm: int,
    product: int,
    feature: int = 0,
    key_version: int = 1,
    mode: str = "license",
    grace: int = 0,
    key: bytes | None = None,
    firm_pem: str | None = None,
    force: bool = False,
    exclude: Iterable[str] = (),
    optimize: int = -1,
    _python: tuple[str, str] | None = None,
) -> BuildResult:
    """Protect a package directory or a single script; see the module docstring."""
    codes.check_firm_code(firm)
    codes.check_product_code(product)
    codes.check_feature(feature)
    if key_version < 1:
        raise BuildError("--key-version is an integer >= 1")
    if grace < 0:
        raise BuildError("--grace cannot be negative")
    if mode not in F.MODES:
        raise BuildError(f"--mode is one of {', '.join(F.MODES)}")
    if mode == "license":
        if key is None or len(key) != 32:
            raise BuildError("license mode needs the product key (--central or --product-key-file)")
        if not firm_pem or "BEGIN PUBLIC KEY" not in firm_pem:
            raise BuildError("license mode needs the firm's public key to pin (--firm-key PEM, or --central)")
    else:
        key, firm_pem, grace = os.urandom(32), None, 0  # never the product key: the bootstrap is clear
    src_path = Path(src).resolve()
    out_path = Path(out_dir).resolve()
    if not src_path.exists():
        raise BuildError(f"{src}: no such package directory or script")
    if src_path.is_dir():
        name = _identifier(src_path.name, src_path)
        kind, target = "package", out_path / name
    elif src_path.suffix == ".py":
        name = _identifier(src_path.stem, src_path)
        kind, target = "script", out_path / (name + ".py")
    else:
        raise BuildError(f"{src}: give a package directory or a .py script")
    if kind == "package" and (target == src_path or src_path in target.parents or target in src_path.parents):
        raise BuildError(f"-o {out_dir}: the output must be outside the source package")
    python, cache_tag = _python or F.python_tag()
    config: dict[str, Any] = {
        "package": name,
        "firm": firm,
        "product": product,
        "feature": feature,
        "key_version": key_version,
        "mode": mode,
        "grace": grace,
        "python": python,
        "cache_tag": cache_tag,
        "firm_key": firm_pem,
    }
    if mode == "ip":
        config["ip_key"] = b64e(key)
    header = F.header_bytes(F.MODULE_MAGIC, F.module_header_fields(**{k: config[k] for k in _HEADER_KEYS}))
    patterns = list(exclude)
    out_path.mkdir(parents=True, exist_ok=True)
    if kind == "script":
        return _protect_script(src_path, out_path, name, config, header, key, force, optimize)
    if target.exists() and not force:
        raise BuildError(f"{target} exists: remove it, pass --force, or choose another -o")
    tmp = out_path / f".{name}.licentia-{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        modules, data = _protect_tree(src_path, tmp, name, header, key, patterns, optimize)
        (tmp / "__init__.py").write_text(_bootstrap("package", config), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuildResult(target, kind, modules, data, python, mode)


_HEADER_KEYS = ("package", "firm", "product", "feature", "key_version", "mode", "grace", "python", "cache_tag")


def _excluded(rel: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(os.path.basename(rel), p) for p in patterns)


def _protect_tree(
    src: Path, dst: Path, name: str, header: bytes, key: bytes, patterns: list[str], optimize: int
) -> tuple[int, int]:
    modules = data = 0
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        rel_dir = Path(root).relative_to(src)
        (dst / rel_dir).mkdir(parents=True, exist_ok=True)
        for filename in sorted(files):
            path = Path(root) / filename
            rel = (rel_dir / filename).as_posix()
            if filename.endswith(SKIP_SUFFIXES):
                continue
            if filename.endswith(".py") and not _excluded(rel, patterns):
                parts = [name, *rel_dir.parts]
                if filename != "__init__.py":
                    parts.append(filename[:-3])
                dotted = ".".join(parts)
                blob = encrypt_module(path.read_bytes(), f"{name}/{rel}", dotted, header, key, optimize, shown=path)
                (dst / rel_dir / (filename[:-3] + F.MODULE_SUFFIX)).write_bytes(blob)
                modules += 1
            else:
                shutil.copy2(path, dst / rel_dir / filename)
                data += 1
    return modules, data


def encrypt_module(
    source: bytes, filename: str, dotted: str, header: bytes, key: bytes, optimize: int = -1, shown: Any = None
) -> bytes:
    """Compile ``source`` (shown in tracebacks as ``filename``) and encrypt it for ``dotted``."""
    try:
        code = compile(source, filename, "exec", dont_inherit=True, optimize=optimize)
    except SyntaxError as exc:
        raise BuildError(f"{shown or filename}: line {exc.lineno}: {exc.msg}") from None
    return header + hazmat.aead_encrypt(key, marshal.dumps(code), F.module_aad(dotted, header))


def _protect_script(
    src: Path, out: Path, name: str, config: dict[str, Any], header: bytes, key: bytes, force: bool, optimize: int
) -> BuildResult:
    boot, blob_path = out / (name + ".py"), out / (name + F.MODULE_SUFFIX)
    if src in (boot, blob_path):
        raise BuildError("-o: the output must not overwrite the source script")
    if (boot.exists() or blob_path.exists()) and not force:
        raise BuildError(f"{boot} exists: remove it, pass --force, or choose another -o")
    source = src.read_bytes()
    blob = encrypt_module(source, src.name, name, header, key, optimize, shown=src)
    shebang = source.split(b"\n", 1)[0].decode("utf-8", "replace") if source.startswith(b"#!") else None
    from ..container.files import write_atomic

    write_atomic(blob_path, blob, mode=0o644)
    write_atomic(boot, _bootstrap("script", config, shebang).encode(), mode=0o755 if shebang else 0o644)
    return BuildResult(boot, "script", 1, 0, config["python"], config["mode"])


def _bootstrap(kind: str, config: dict[str, Any], shebang: str | None = None) -> str:
    what = "modules of this package are" if kind == "package" else "code of this script is"
    if config["mode"] == "ip":
        how = [
            "# open without a license (IP mode: the key is below, so this stops casual reading only).",
        ]
    else:
        how = [
            f"# open only with a license (firm {config['firm']}, product {config['product']}, key version "
            f"{config['key_version']}).",
            "# This file is clear on purpose: the key comes from the license, not from here.",
        ]
    lines = [shebang] if shebang else []
    lines += [f"# Protected with licentia: the {what} encrypted (*{F.MODULE_SUFFIX}) and", *how]
    lines.append(f'__import__("licentia.protect.runtime", fromlist=["{kind}"]).{kind}(globals(), {{')
    lines += [f"    {k!r}: {v!r}," for k, v in sorted(config.items())]
    lines += ["})", ""]
    return "\n".join(lines)
