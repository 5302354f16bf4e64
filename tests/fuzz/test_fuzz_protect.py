"""Protected modules and protected data files under any bytes: the header, the data or the
code, or the protector's typed error (``FormatError`` from the header parser,
``ProtectedDataError`` from the data file reader, ``ProtectedImportError`` from the module
loader), never another exception, and the file as it was.

Besides raw bytes, the files are built the way ``licentia protect`` builds them: a header
with one change anywhere among its fields (also values only a lenient JSON reader takes:
NaN, Infinity, 1e400, escaped surrogates, duplicate keys, deep nesting, numbers past
2**63), then a body encrypted under that very header with the product key, so the reader
gets past authentication and meets what the header says. ``make fuzz`` runs them with many
more examples."""

from __future__ import annotations

import contextlib
import marshal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from licentia.core import hazmat
from licentia.core.encoding import b64d, b64e
from licentia.core.errors import FormatError, ProtectedDataError, ProtectedImportError
from licentia.protect import data as D
from licentia.protect import fileformat as F
from licentia.protect.runtime import _Protected
from tests.strategies import one_change, pin, render

KEY = bytes(range(32))
SALT = bytes(16)
DATA_FIELDS = {
    "format": 1,
    "kind": "data",
    "firm": 10101,
    "product": 1,
    "feature": 0,
    "key_version": 1,
    "chunk": 16,
    "salt": b64e(SALT),
}
PYTHON, CACHE_TAG = F.python_tag()
MODULE_FIELDS = F.module_header_fields(
    package="fuzzpkg",
    firm=10101,
    product=1,
    feature=0,
    key_version=1,
    mode="ip",
    grace=0,
    python=PYTHON,
    cache_tag=CACHE_TAG,
)

#: header texts only a lenient JSON reader takes, by what they hold
HOSTILE_HEADERS = {
    "NaN": '{"format": 1, "kind": "data", "chunk": NaN}',
    "Infinity": '{"format": 1, "kind": "data", "key_version": Infinity}',
    "1e400": '{"format": 1, "kind": "data", "firm": 10101, "product": 1, "feature": 0, "key_version": 1e400, '
    '"chunk": 16, "salt": ""}',
    "lone-surrogate": '{"format": 1, "kind": "data", "salt": "\\ud800"}',
    "duplicate-key": '{"format": 1, "format": 1, "kind": "data"}',
    "2**64": '{"format": 1, "kind": "data", "firm": 10101, "product": 1, "feature": 0, "key_version": 1, '
    f'"chunk": {2**64}, "salt": ""}}',
    "depth-40": '{"format": 1, "x": ' + "[" * 40 + "]" * 40 + "}",
    "depth-30000": "[" * 30_000 + "]" * 30_000,
}


def framed(magic: bytes, header: bytes, body: bytes = b"", length: int | None = None) -> bytes:
    return magic + F._LEN.pack(len(header) if length is None else length) + header + body


def header_text(fields: Any) -> bytes:
    """A header's JSON as any writer may have made it (NaN and the like as their tokens)."""
    return render(fields).encode()


#: sizes a header may name whose whole chunk this machine could allocate: the reader reads a
#: chunk before it authenticates it (see the expected failure below), so the test keeps to
#: sizes it either allocates at once or refuses at once
SAFE_CHUNK = 1 << 20


def _safe(fields: Any) -> Any:
    if isinstance(fields, dict) and type(fields.get("chunk")) is int and SAFE_CHUNK < fields["chunk"] < 2**46:
        return {**fields, "chunk": 2**48}
    return fields


def data_file(fields: Any, plain: bytes) -> bytes:
    """A data file whose header holds ``fields`` and whose chunks are encrypted under that
    header with the product key (the chunk size and salt the header names, where usable)."""
    header = framed(F.DATA_MAGIC, header_text(fields))
    chunk, salt = 16, SALT
    if isinstance(fields, dict):
        if type(fields.get("chunk")) is int and 1 <= fields["chunk"] <= 64:
            chunk = fields["chunk"]
        with contextlib.suppress(ValueError):
            salt = b64d(fields.get("salt"))
    key = D.file_key(KEY, salt)
    pieces = [plain[i : i + chunk] for i in range(0, len(plain), chunk)] or [b""]
    if len(pieces[-1]) == chunk and plain:
        pieces.append(b"")
    body = b"".join(
        hazmat.aead_encrypt(key, p, F.chunk_aad(header, i, i == len(pieces) - 1)) for i, p in enumerate(pieces)
    )
    return header + body


data_fields = one_change(DATA_FIELDS).map(_safe)
data_files = st.one_of(
    st.tuples(data_fields, st.binary(max_size=80)).map(lambda fp: data_file(*fp)),
    st.tuples(data_fields, st.binary(max_size=80)).map(lambda fp: data_file(*fp)[:-1]),
    st.tuples(st.sampled_from(list(HOSTILE_HEADERS.values())), st.binary(max_size=60)).map(
        lambda hb: framed(F.DATA_MAGIC, hb[0].encode(), hb[1])
    ),
    st.tuples(st.binary(max_size=60), st.integers(0, 0xFFFF), st.binary(max_size=60)).map(
        lambda t: framed(F.DATA_MAGIC, t[0], t[2], t[1])
    ),
    st.binary(max_size=100),
)


# ---------------------------------------------------------------- the header parser


def split(magic: bytes, data: bytes) -> None:
    try:
        fields, raw, end = F.split_header(magic, data)
    except FormatError:
        return
    assert isinstance(fields, dict) and fields.get("format") == F.FORMAT_VERSION
    assert raw == data[:end] and raw.startswith(magic)


@pytest.mark.parametrize("magic", [F.DATA_MAGIC, F.MODULE_MAGIC], ids=["data", "module"])
@settings(deadline=None)
@given(
    st.one_of(
        data_files,
        one_change(MODULE_FIELDS).map(lambda f: framed(F.MODULE_MAGIC, header_text(f), b"\0" * 28)),
        st.sampled_from(list(HOSTILE_HEADERS.values())).map(lambda h: framed(F.MODULE_MAGIC, h.encode())),
    )
)
@pin(framed(F.MODULE_MAGIC, h.encode()) for n, h in HOSTILE_HEADERS.items() if n != "depth-30000")
@pin(framed(F.DATA_MAGIC, h.encode()) for n, h in HOSTILE_HEADERS.items() if n != "depth-30000")
def test_a_header_gives_its_fields_or_the_format_error(magic, data):
    split(magic, data)


@settings(deadline=None, phases=[Phase.explicit])
@given(st.binary())
@example(framed(F.DATA_MAGIC, HOSTILE_HEADERS["depth-30000"].encode()))
def test_a_deeply_nested_header_is_a_format_error(data):
    split(F.DATA_MAGIC, data)


# ---------------------------------------------------------------- the data file reader


@pytest.fixture(scope="module")
def spot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data") / "file.lpd"


def read_back(path: Path, data: bytes) -> bytes | None:
    """What the reader gives for a file holding ``data`` (None: ProtectedDataError); the file
    is unchanged either way."""
    path.write_bytes(data)
    try:
        with D.ProtectedFile(path, KEY) as fh:
            out = fh.read()
            fh.seek(0)
            assert fh.readline() == out[: out.find(b"\n") + 1 if b"\n" in out else len(out)]
            fh.seek(max(0, fh.size - 3))
            assert fh.read() == out[max(0, fh.size - 3) :]
            header = fh.header
    except ProtectedDataError:
        return None
    finally:
        assert path.read_bytes() == data, "the reader changed the file"
    assert header.chunk >= 1 and header.firm >= 1 and header.feature >= 0 and len(out) == fh.size
    return out


@settings(deadline=None)
@given(st.one_of(st.tuples(data_fields, st.binary(max_size=80)), st.tuples(st.just(DATA_FIELDS), st.binary())))
def test_a_data_file_gives_its_plaintext_or_the_typed_error(spot, case):
    fields, plain = case
    out = read_back(spot, data_file(fields, plain))
    if out is not None:
        assert out == plain  # chunks authenticate only under the header they were sealed with


@settings(deadline=None)
@given(data_files)
@pin(framed(F.DATA_MAGIC, h.encode()) for n, h in HOSTILE_HEADERS.items() if n in ("NaN", "duplicate-key", "depth-40"))
def test_any_bytes_give_a_data_file_or_the_typed_error(spot, data):
    read_back(spot, data)


@settings(deadline=None, phases=[Phase.explicit])
@given(st.binary())
@example(framed(F.DATA_MAGIC, HOSTILE_HEADERS["depth-30000"].encode()))
@example(framed(F.DATA_MAGIC, HOSTILE_HEADERS["1e400"].encode(), b"\0" * 40))
@example(framed(F.DATA_MAGIC, HOSTILE_HEADERS["2**64"].encode(), b"\0" * 40))
@example(data_file({**DATA_FIELDS, "chunk": 2**48}, b"secret"))
def test_a_data_file_with_a_hostile_header_is_a_typed_error(spot, data):
    read_back(spot, data)


# ---------------------------------------------------------------- the module loader

CONFIG = {**MODULE_FIELDS, "ip_key": b64e(KEY)}
MODULE_HEADER = F.header_bytes(F.MODULE_MAGIC, MODULE_FIELDS)
CODE = marshal.dumps(compile("x = 1", "<fuzzpkg.mod>", "exec"))


def module_file(header: bytes, plain: bytes, name: str = "fuzzpkg.mod") -> bytes:
    return header + hazmat.aead_encrypt(KEY, plain, F.module_aad(name, header))


module_files = st.one_of(
    one_change(MODULE_FIELDS).map(lambda f: module_file(framed(F.MODULE_MAGIC, header_text(f)), CODE)),
    st.binary(max_size=60).map(lambda b: module_file(MODULE_HEADER, b)),  # any bytes where the code goes
    st.integers(0, len(CODE)).map(lambda n: module_file(MODULE_HEADER, CODE[:n])),
    st.tuples(st.sampled_from(list(HOSTILE_HEADERS.values())), st.binary(max_size=40)).map(
        lambda hb: framed(F.MODULE_MAGIC, hb[0].encode(), hb[1])
    ),
    st.binary(max_size=100).map(lambda b: MODULE_HEADER + b),
    st.binary(max_size=100),
)


def loaded(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        code = _Protected("fuzzpkg", CONFIG).load_code("fuzzpkg.mod", str(path))
    except ProtectedImportError:
        return
    finally:
        assert path.read_bytes() == data
    assert code.co_filename == "<fuzzpkg.mod>"


@pytest.fixture(scope="module")
def module_spot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzzpkg") / "mod.lpy"


@settings(deadline=None)
@given(module_files)
@pin(framed(F.MODULE_MAGIC, h.encode(), b"\0" * 40) for n, h in HOSTILE_HEADERS.items() if n != "depth-30000")
def test_a_module_gives_its_code_or_the_import_error(module_spot, data):
    loaded(module_spot, data)


@settings(deadline=None, phases=[Phase.explicit])
@given(st.binary())
@example(framed(F.MODULE_MAGIC, HOSTILE_HEADERS["depth-30000"].encode(), b"\0" * 40))
@example(module_file(MODULE_HEADER, b"\xff"))
@example(module_file(MODULE_HEADER, CODE[:10]))
def test_a_module_with_a_deep_header_or_no_code_is_an_import_error(module_spot, data):
    loaded(module_spot, data)


def test_the_genuine_files_read(spot, module_spot):
    plain = b"line one\nline two\n" * 3
    assert read_back(spot, data_file(DATA_FIELDS, plain)) == plain
    module_spot.write_bytes(module_file(MODULE_HEADER, CODE))
    namespace: dict[str, Any] = {}
    exec(_Protected("fuzzpkg", CONFIG).load_code("fuzzpkg.mod", str(module_spot)), namespace)  # noqa: S102 (what an import does)
    assert namespace["x"] == 1
