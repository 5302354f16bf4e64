"""Protected data files: round trips, streaming, and every way of cutting or mixing chunks fails."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from licentia.core import exchange
from licentia.protect import ProtectedDataError, data
from licentia.protect import fileformat as F
from tests.protect.helpers import FIRM_CODE, PRODUCT, Machine

KEY = bytes(range(32))
FIELDS = {"firm": FIRM_CODE, "product": PRODUCT, "feature": 0, "key_version": 1}


def protect(tmp_path: Path, payload: bytes, chunk: int = 64, name: str = "blob.bin", key: bytes = KEY) -> Path:
    src = tmp_path / f"plain-{name}"
    src.write_bytes(payload)
    dst = tmp_path / "out" / name
    assert data.protect_file(src, dst, key, chunk=chunk, **FIELDS) == len(payload)
    return dst


def layout(path: Path, chunk: int = 64) -> tuple[bytes, list[bytes]]:
    blob = path.read_bytes()
    _, _, start = F.split_header(F.DATA_MAGIC, blob)
    full = chunk + F.CHUNK_OVERHEAD
    return blob[:start], [blob[i : i + full] for i in range(start, len(blob), full)]


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 64 * 3 + 17, 64 * 4])
def test_round_trip_sizes(tmp_path, size):
    payload = os.urandom(size)
    path = protect(tmp_path, payload)
    _, chunks = layout(path)
    assert len(chunks) == max(1, -(-size // 64))
    with data.ProtectedFile(path, KEY) as f:
        assert f.size == size and f.read() == payload and f.read() == b"" and f.tell() == size


def test_file_api_reads_seeks_and_lines(tmp_path):
    payload = b"".join(f"line {i:04d} {'x' * (i % 50)}\n".encode() for i in range(400))
    path = protect(tmp_path, payload)
    with data.ProtectedFile(path, KEY) as f:
        assert f.readable() and f.seekable() and not f.writable()
        assert f.read(10) == payload[:10] and f.tell() == 10
        buf = bytearray(200)
        assert f.readinto(buf) == 200 and bytes(buf) == payload[10:210]
        assert f.seek(5000) == 5000 and f.read(300) == payload[5000:5300]
        assert f.seek(-100, io.SEEK_CUR) == 5200 and f.read(1) == payload[5200:5201]
        assert f.seek(-7, io.SEEK_END) == len(payload) - 7 and f.read() == payload[-7:]
        f.seek(0)
        assert f.readline() == payload.split(b"\n")[0] + b"\n"
        assert f.readline(4) == b"line"
        f.seek(0)
        assert list(f) == payload.splitlines(keepends=True)
        f.seek(len(payload) + 10)
        assert f.read(5) == b""
        with pytest.raises(ValueError):
            f.seek(-1)
    assert f.closed
    with pytest.raises(ValueError):
        f.read(1)
    # buffered wrappers work too
    with io.BufferedReader(data.ProtectedFile(path, KEY)) as b:
        assert b.read() == payload


def test_several_real_chunks_round_trip(tmp_path):
    payload = os.urandom(3 * F.DEFAULT_CHUNK + 12345)
    path = protect(tmp_path, payload, chunk=F.DEFAULT_CHUNK)
    assert len(layout(path, F.DEFAULT_CHUNK)[1]) == 4
    with data.ProtectedFile(path, KEY) as f:
        assert f.read() == payload


def expect_damage(path: Path, match: str = "does not authenticate") -> None:
    with pytest.raises(ProtectedDataError, match=match) as info, data.ProtectedFile(path, KEY) as f:
        f.read()
    assert str(path) in str(info.value)


def test_truncation_reordering_splicing_and_flipped_bytes_fail(tmp_path):
    payload = os.urandom(64 * 4 + 10)  # 5 chunks
    path = protect(tmp_path, payload)
    header, chunks = layout(path)
    assert len(chunks) == 5

    def write(*parts: bytes) -> Path:
        path.write_bytes(b"".join(parts))
        return path

    expect_damage(write(header, *chunks[:4]))  # dropped the final chunk: chunk 3 was not final
    expect_damage(write(header, *chunks[:3], chunks[4]))  # dropped a middle chunk
    expect_damage(write(header, *chunks[:4], chunks[4][:-1]))  # cut inside the last chunk
    expect_damage(write(header, *chunks, chunks[4]))  # appended a copy of the last chunk
    expect_damage(write(header, chunks[0], chunks[2], chunks[1], *chunks[3:]))  # reordered
    expect_damage(write(header), "truncated")
    expect_damage(write(header[:-3]), "not a readable licentia protected data file")
    expect_damage(write(header, chunks[0][:20]), "truncated")
    other = protect(tmp_path, payload, name="other.bin")  # same key and content, another file
    _, others = layout(other)
    expect_damage(write(header, chunks[0], others[1], *chunks[2:]))  # spliced
    for i, chunk in enumerate(chunks):
        for offset in (0, 12, len(chunk) - 1):  # nonce, ciphertext, tag
            bad = bytearray(chunk)
            bad[offset] ^= 0x80
            expect_damage(write(header, *chunks[:i], bytes(bad), *chunks[i + 1 :]), f"chunk {i} of 5")
    bad_header = bytearray(header)
    bad_header[-5] ^= 0x01  # inside the salt: another file key, or no valid salt at all
    expect_damage(write(bytes(bad_header), *chunks), "does not authenticate|not a readable")
    write(header, *chunks)
    with pytest.raises(ProtectedDataError, match="chunk 0"):
        data.ProtectedFile(path, bytes(32))  # another product key
    with data.ProtectedFile(path, KEY) as f:
        assert f.read() == payload


STREAM = r"""
import hashlib, os, resource, sys
from licentia.protect import data
src, dst, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
block = os.urandom(1 << 20)
want = hashlib.sha256()
with open(src, "wb") as fh:
    for i in range(size >> 20):
        fh.write(block); want.update(block)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
data.protect_file(src, dst, bytes(range(32)), firm=10101, product=1)
got = hashlib.sha256()
with data.ProtectedFile(dst, bytes(range(32))) as f:
    while True:
        part = f.read(1 << 20)
        if not part:
            break
        got.update(part)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(got.hexdigest() == want.hexdigest(), grown // 1024)
"""


def test_large_files_stream_in_constant_memory(tmp_path, machine: Machine):
    size = 96 << 20
    r = machine.run(tmp_path, "-c", STREAM, str(tmp_path / "big.bin"), str(tmp_path / "big.lpd"), str(size))
    assert r.returncode == 0, r.stderr
    same, grown_mib = r.stdout.split()
    assert same == "True"
    print("memory growth while streaming:", grown_mib, "MiB")
    assert int(grown_mib) < 24, f"memory grew by {grown_mib} MiB while streaming {size >> 20} MiB"


OPEN = r"""
import sys, licentia
path = sys.argv[1]
if len(sys.argv) > 2:
    licentia.trust(10101, sys.argv[2])
try:
    with licentia.open_protected(path) as f:
        print("READ", f.read().decode())
except licentia.LicenseError as exc:
    print(type(exc).__name__, exc)
"""


def test_open_protected_takes_the_key_from_the_license(tmp_path, firm, built, machine: Machine):
    key = exchange.derive_product_key(firm.secret, firm.code, PRODUCT, 1)
    path = protect(tmp_path, b"model weights", key=key)
    pem = tmp_path / "firm.pem"
    pem.write_text(firm.pem)
    r = machine.run(tmp_path, "-c", OPEN, str(path), str(pem))
    assert r.stdout.startswith(f"LicenseNotFound {path} needs a license (firm 10101, product 1, key version 1)")
    r = machine.run(tmp_path, "-c", OPEN, str(path))
    assert r.stdout.startswith("TrustNotConfigured ")
    machine.activate(firm)
    r = machine.run(tmp_path, "-c", OPEN, str(path), str(pem))
    assert r.stdout.strip() == "READ model weights", r.stderr
    # read from a protected package's process: the package pinned the firm key already
    r = machine.code(built(), f"import sampleapp, licentia\nprint(licentia.open_protected({str(path)!r}).read())")
    assert r.stdout.strip() == "b'model weights'", r.stderr
