"""Protected data files: chunked AES-256-GCM that streams (``licentia protect-data``).

See ``_format`` for the layout. Writing and reading hold one chunk (1 MiB by
default) in memory at a time, so files of any size stream. Each chunk is
authenticated with its index and a final-chunk flag: dropping, reordering or
splicing chunks (also from another file: each file has its own key) fails.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..core import codes, hazmat
from ..core.encoding import b64d, b64e
from ..core.errors import ProtectedDataError
from . import fileformat as F


@dataclass(frozen=True)
class DataHeader:
    firm: int
    product: int
    feature: int
    key_version: int
    chunk: int
    salt: bytes
    raw: bytes  # the header bytes (bound into every chunk)


def data_header(*, firm: int, product: int, feature: int, key_version: int, chunk: int, salt: bytes) -> bytes:
    fields = {
        "format": F.FORMAT_VERSION,
        "kind": "data",
        "firm": firm,
        "product": product,
        "feature": feature,
        "key_version": key_version,
        "chunk": chunk,
        "salt": b64e(salt),
    }
    return F.header_bytes(F.DATA_MAGIC, fields)


SALT_BYTES = 16


def _salt(text: str) -> bytes:
    salt = b64d(text)
    if len(salt) != SALT_BYTES:
        raise F.FormatError(f"the salt is {SALT_BYTES} bytes")
    return salt


def file_key(product_key: bytes, salt: bytes) -> bytes:
    return hazmat.hkdf(product_key, salt=salt, info=F.DATA_KEY_INFO)


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    key: bytes,
    *,
    firm: int,
    product: int,
    feature: int = 0,
    key_version: int = 1,
    chunk: int = F.DEFAULT_CHUNK,
) -> int:
    """Encrypt ``src`` to ``dst`` chunk by chunk; return the plaintext size."""
    if not 1 <= chunk <= F.MAX_CHUNK:
        raise ValueError(f"chunk size must be between 1 byte and {F.MAX_CHUNK >> 20} MiB")
    salt = os.urandom(SALT_BYTES)
    header = data_header(firm=firm, product=product, feature=feature, key_version=key_version, chunk=chunk, salt=salt)
    fkey = file_key(key, salt)
    dst.write(header)
    index = total = 0
    current = _read_full(src, chunk)
    while True:
        following = _read_full(src, chunk) if len(current) == chunk else b""
        final = not following
        dst.write(hazmat.aead_encrypt(fkey, current, F.chunk_aad(header, index, final)))
        total += len(current)
        if final:
            return total
        index += 1
        current = following


def _read_full(src: BinaryIO, size: int) -> bytes:
    parts, left = [], size
    while left:
        part = src.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def protect_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], key: bytes, **fields: Any) -> int:
    """Encrypt one file (written to a temporary name, then renamed)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            size = encrypt_stream(fin, fout, key, **fields)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


def protect_files(
    sources: Iterable[str | os.PathLike[str]], out_dir: str | os.PathLike[str], key: bytes, **fields: Any
) -> list[tuple[Path, Path, int]]:
    """Encrypt files (a directory: every file in it, keeping relative paths) into ``out_dir``."""
    out = Path(out_dir).resolve()
    jobs: list[tuple[Path, Path]] = []
    for source in sources:
        path = Path(source).resolve()
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                if p.is_file():
                    jobs.append((p, out / path.name / p.relative_to(path)))
        elif path.is_file():
            jobs.append((path, out / path.name))
        else:
            raise FileNotFoundError(f"{source}: no such file or directory")
    targets = [t for _, t in jobs]
    if len(set(targets)) != len(targets):
        raise ValueError("two inputs have the same name: protect them into different -o directories")
    done = []
    for path, target in jobs:
        if path == target:
            raise ValueError(f"{path}: -o must be another directory (the file would overwrite itself)")
        done.append((path, target, protect_file(path, target, key, **fields)))
    return done


# ---------------------------------------------------------------- reading


def _whole(value: Any, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise F.FormatError(f"bad {what}")
    return value


def read_header(fh: BinaryIO, path: Any) -> tuple[DataHeader, int]:
    head = fh.read(len(F.DATA_MAGIC) + 2 + F.MAX_HEADER)
    try:
        fields, raw, end = F.split_header(F.DATA_MAGIC, head)
        if fields.get("kind") != "data":
            raise F.FormatError("not a data file")
        header = DataHeader(
            firm=codes.check_firm_code(fields["firm"]),
            product=codes.check_product_code(fields["product"]),
            feature=codes.check_feature(fields["feature"]),
            key_version=_whole(fields["key_version"], "key version", 1, codes.UINT32_MAX),
            chunk=_whole(fields["chunk"], "chunk size", 1, F.MAX_CHUNK),
            salt=_salt(fields["salt"]),
            raw=raw,
        )
    except (F.FormatError, KeyError, TypeError, ValueError) as exc:
        raise ProtectedDataError(f"{path}: not a readable licentia protected data file ({exc})") from None
    return header, end


class ProtectedFile(io.RawIOBase):
    """A read-only, seekable binary file over a protected data file; one chunk in memory."""

    def __init__(self, path: str | os.PathLike[str], key: bytes | None = None, *, firm_key: Any = None):
        super().__init__()
        self.name = os.fspath(path)
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            self.header, self._start = read_header(self._fh, self.name)
            body = os.fstat(self._fh.fileno()).st_size - self._start
            try:
                self._count, self.size = F.chunk_layout(body, self.header.chunk)
            except F.FormatError as exc:
                raise ProtectedDataError(f"{self.name}: the protected file is {exc}") from None
            if key is None:
                key = self._license_key(firm_key)
            self._key = file_key(key, self.header.salt)
            self._pos = 0
            self._index = -1
            self._plain = b""
            self._load(0)
        except BaseException:
            self._fh.close()
            raise

    def _license_key(self, firm_key: Any) -> bytes:
        from ..core import errors as E
        from ._keys import product_key

        h = self.header
        try:
            return product_key(h.firm, h.product, h.feature, h.key_version, firm_key=firm_key, label=self.name)
        except E.LicenseError as exc:
            what = f"firm {h.firm}, product {h.product}" + (f", feature {h.feature}" if h.feature else "")
            message = f"{self.name} needs a license ({what}, key version {h.key_version}): {exc}"
            if isinstance(exc, E.LicenseInvalid):
                raise E.LicenseInvalid(message, tried=exc.tried) from None
            raise type(exc)(message, tried=exc.tried) from None

    # -------------------------------------------------- chunks

    def _load(self, index: int) -> None:
        if index == self._index:
            return
        full = self.header.chunk + F.CHUNK_OVERHEAD
        final = index == self._count - 1
        self._fh.seek(self._start + index * full)
        blob = self._fh.read(full)
        try:
            self._plain = hazmat.aead_decrypt(self._key, blob, F.chunk_aad(self.header.raw, index, final))
        except hazmat.CryptoError:
            self._index, self._plain = -1, b""
            raise ProtectedDataError(
                f"{self.name}: chunk {index} of {self._count} does not authenticate: the file is damaged, "
                "truncated, reordered or altered (or protected for another product key)"
            ) from None
        self._index = index

    # -------------------------------------------------- io.RawIOBase

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: Any) -> int:
        self._checkClosed()
        view = memoryview(buffer).cast("B")
        done, want = 0, len(view)
        chunk = self.header.chunk
        while done < want and self._pos < self.size:
            index, offset = divmod(self._pos, chunk)
            self._load(index)
            piece = self._plain[offset : offset + want - done]
            view[done : done + len(piece)] = piece
            done += len(piece)
            self._pos += len(piece)
        return done

    def readall(self) -> bytes:
        out = bytearray(max(0, self.size - self._pos))
        n = self.readinto(out)
        del out[n:]
        return bytes(out)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        self._checkClosed()
        want = min(size, self.size - self._pos)
        if want <= 0:
            return b""
        index, offset = divmod(self._pos, self.header.chunk)
        self._load(index)
        if offset + want <= len(self._plain):  # within one chunk: one slice (none for a whole chunk)
            self._pos += want
            return self._plain[offset : offset + want]
        out = bytearray(want)
        n = self.readinto(out)
        del out[n:]
        return bytes(out)

    def readline(self, size: int | None = -1) -> bytes:
        self._checkClosed()
        out = bytearray()
        limit = -1 if size is None else size
        chunk = self.header.chunk
        while self._pos < self.size and (limit < 0 or len(out) < limit):
            index, offset = divmod(self._pos, chunk)
            self._load(index)
            end = self._plain.find(b"\n", offset)
            stop = len(self._plain) if end < 0 else end + 1
            if limit >= 0:
                stop = min(stop, offset + limit - len(out))
            out += self._plain[offset:stop]
            self._pos += stop - offset
            if end >= 0 and stop == end + 1:
                break
        return bytes(out)

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
            self._plain = b""
        super().close()

    def __repr__(self) -> str:
        return f"<licentia.ProtectedFile name={self.name!r} size={self.size}>"


def open_protected(path: str | os.PathLike[str], *, firm_key: Any = None) -> ProtectedFile:
    return ProtectedFile(path, firm_key=firm_key)
