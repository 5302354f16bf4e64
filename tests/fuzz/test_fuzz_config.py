"""Configuration under any input: the license server's access rules and ``[server]`` table,
the runtime's ``config.toml`` and Central's environment give their settings or their typed
error (``AclError``, ``SettingsError``, ``ActivationError``; the runtime's server list never
fails, it leaves out what it cannot use), never another exception.

Inputs: a genuine configuration with one change anywhere inside, written as TOML the way an
administrator writes it; the values that broke readers before at each place (nan, inf,
1e400, numbers past 2**63 and past 4300 digits, duplicate keys, deep nesting, an escaped or
raw surrogate, bytes that are not UTF-8); and any text or bytes. ``make fuzz`` runs them
with many more examples."""

from __future__ import annotations

import itertools
import math
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from licentia.central.settings import ENV_VARS
from licentia.central.settings import Settings as CentralSettings
from licentia.core import errors as E
from licentia.runtime import _servers
from licentia.runtime import config as runtime_config
from licentia.seats.acl import Acl, AclError
from licentia.server.settings import Settings as ServerSettings
from licentia.server.settings import SettingsError, read_config, server_table
from tests.strategies import (
    near,
    pin,
    pinned_toml_texts,
    toml_docs_like,
    toml_text,
)

#: a license server's config file: access rules and the [server] table (docs/server.md)
SERVER_TOML: dict[str, Any] = {
    "groups": {"eng": ["alice", "bob"]},
    "rules": [
        {"action": "deny", "users": ["mallory"], "name": "no mallory"},
        {"action": "deny", "ips": ["192.168.0.0/16", "fd00::/8"], "product": "10101:1"},
        {"action": "max", "product": "10101:1", "users": ["carol"], "seats": 1},
        {"action": "reserve", "product": "10101:*", "groups": ["eng"], "hosts": ["kiosk-*"], "seats": 2},
        {"action": "allow", "product": "*", "ips": ["10.0.0.1"]},
    ],
    "borrow": {"enabled": True, "max_days": 7, "max_seats": 2, "groups": ["laptops"]},
    "server": {
        "lease_ttl": 120,
        "heartbeat": 40.0,
        "linger": 5,
        "usage_retention_days": 365,
        "access_token": "t0ken",
        "durability": "full",
        "discovery": True,
        "discovery_port": 22370,
        "discovery_bind": "0.0.0.0",
        "tls_cert": "cert.pem",
        "tls_key": "key.pem",
        "sweep_interval": 1,
        "config_poll": 2.5,
        "private_views": False,
        "max_grace": "3d",
    },
}
#: the runtime's $LICENTIA_HOME/config.toml
RUNTIME_TOML: dict[str, Any] = {
    "central": {"url": "https://licenses.example.com"},
    "network": {
        "servers": ["lic1", "lic2:22371", "https://[::1]:8443"],
        "discovery": True,
        "broadcast": "255.255.255.255",
        "discovery_port": 22370,
        "discovery_timeout": 0.5,
    },
}

#: examples of the properties that write a config file each (``make fuzz``: the profile's)
WRITES = {} if os.environ.get("LICENTIA_FUZZ") else {"max_examples": 50}

_places = [
    ("groups", "eng"),
    ("rules", 2, "seats"),
    ("rules", 1, "ips"),
    ("borrow", "max_days"),
    ("server", "heartbeat"),
    ("server", "lease_ttl"),
    ("server", "tls_cert"),
    ("server", "max_grace"),
]
SERVER_PINS = {
    f"{'.'.join(map(str, p))}={name}": text for p in _places for name, text in pinned_toml_texts(SERVER_TOML, p).items()
}
_runtime_places = [
    ("central", "url"),
    ("central",),
    ("network", "servers"),
    ("network", "discovery_port"),
    ("network", "discovery_timeout"),
    ("network",),
]
RUNTIME_PINS = {
    f"{'.'.join(map(str, p))}={name}": text
    for p in _runtime_places
    for name, text in pinned_toml_texts(RUNTIME_TOML, p).items()
}


def texts_around(shape: dict[str, Any]) -> st.SearchStrategy[str | bytes]:
    """TOML text of ``shape`` with one change; any text; any bytes."""
    return st.one_of(
        toml_docs_like(shape).map(toml_text),
        toml_docs_like(shape).map(toml_text),
        st.text(max_size=80),
        st.binary(max_size=80),
    )


# ---------------------------------------------------------------- access rules


def acl_of(text: str | bytes) -> Acl | None:
    try:
        acl = Acl.from_toml(text)
    except AclError:
        return None
    assert len(acl.digest) == 16
    for rule in acl.rules:
        assert rule.action in ("deny", "allow", "reserve", "max") and not rule.who.empty and rule.seats >= 0
        rule.describe()
    assert acl.borrow.max_days >= 0 and (acl.borrow.max_seats is None or acl.borrow.max_seats >= 0)
    return acl


@settings(deadline=None)
@given(texts_around(SERVER_TOML))
@pin(SERVER_PINS.values())
def test_access_rules_give_the_rules_or_the_acl_error(text):
    acl_of(text)


@settings(deadline=None)
@given(toml_docs_like(SERVER_TOML))
def test_access_rules_read_from_text_and_from_a_table_agree(doc):
    try:
        expected: Any = Acl.from_dict(doc)
    except AclError:
        expected = AclError
    text = toml_text(doc)
    try:
        got: Any = Acl.from_toml(text)
    except AclError:
        got = AclError
    if got is AclError or expected is AclError:
        assert got is expected
    else:
        assert (got.rules, got.groups, got.borrow) == (expected.rules, expected.groups, expected.borrow)


# ---------------------------------------------------------------- the [server] table


def server_values(doc: Any) -> dict[str, Any] | None:
    try:
        values = server_table(doc)
    except SettingsError:
        return None
    ServerSettings(**values)  # every value is a Settings field
    return values


def _non_finite(values: dict[str, Any]) -> bool:
    return any(isinstance(v, float) and not math.isfinite(v) for v in values.values())


@settings(deadline=None)
@given(toml_docs_like(SERVER_TOML))
@pin(
    [
        {"server": {name: value}}
        for name in ("heartbeat", "lease_ttl", "max_grace", "tls_key", "discovery")
        for value in (math.nan, math.inf, -math.inf, 2**63, 2**70, "9" * 5000, "\ud800", [[[]]], {"a": 1}, True)
    ]
    + [{"server": []}, {"server": "x"}, {}]
)
def test_the_server_table_gives_settings_or_the_settings_error(doc):
    values = server_values(doc)
    if values is not None:
        for name in ("heartbeat", "sweep_interval", "config_poll"):
            assert name not in values or values[name] >= 0.05


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A new directory for each example (the runtime caches config.toml by its file's stat)."""
    root = tmp_path_factory.mktemp("homes")
    counter = itertools.count()

    def new(data: str | bytes) -> Path:
        home = root / f"h{next(counter)}"
        home.mkdir()
        (home / "config.toml").write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
        return home

    return new


def load_server_config(path: Path) -> None:
    """What the license server does with its config file (server/core.py ``load_config``)."""
    try:
        acl_of(path.read_bytes())
        server_table(read_config(path))
    except (AclError, SettingsError):
        return


@settings(deadline=None, **WRITES)
@given(texts_around(SERVER_TOML))
@pin(text for name, text in SERVER_PINS.items() if name.startswith(("server.heartbeat=", "rules.2.seats=")))
def test_the_server_config_file_gives_settings_or_a_typed_error(homes, text):
    load_server_config(homes(text) / "config.toml")


@settings(deadline=None, phases=[Phase.explicit])
@given(st.text())
@example(SERVER_PINS["rules.2.seats=depth-100000"])
@example(SERVER_PINS["server.lease_ttl=4301-digits"])
@example(SERVER_PINS["groups.eng=raw-surrogate"])
@example(SERVER_PINS["server.heartbeat=invalid-utf8"])
def test_hostile_server_config_texts_are_typed_errors(homes, text):
    acl_of(text)
    load_server_config(homes(text) / "config.toml")


@settings(deadline=None, phases=[Phase.explicit])
@given(st.text())
@example(SERVER_PINS["server.heartbeat=nan"])
@example(SERVER_PINS["server.heartbeat=inf"])
@example(SERVER_PINS["server.tls_cert=2**63"])
def test_non_finite_seconds_and_a_tls_path_that_is_no_text_are_settings_errors(text):
    values = server_values(tomllib.loads(text))
    assert values is None or not _non_finite(values)


# ---------------------------------------------------------------- the runtime's config.toml


def runtime_reads(home: Path) -> None:
    try:
        doc = runtime_config.load(home)
        url = runtime_config.central_url(home)
    except E.ActivationError:
        doc, url = None, None
    assert doc is None or isinstance(doc, dict)
    assert url is None or (isinstance(url, str) and url)
    net = _servers.read_config(home)  # never fails: what it cannot use is left out (and logged)
    assert isinstance(net.discovery, bool) and isinstance(net.broadcast, str)
    assert type(net.discovery_port) is int and isinstance(net.discovery_timeout, float)
    for server in net.servers:
        assert server.host and 0 < server.port < 65536


@settings(deadline=None, **WRITES)
@given(texts_around(RUNTIME_TOML))
@pin(RUNTIME_PINS.values())
def test_the_runtime_config_gives_its_values_or_the_activation_error(homes, text):
    runtime_reads(homes(text))


@settings(deadline=None, phases=[Phase.explicit])
@given(st.text())
@example('central = "https://licenses.example.com"\n')
@example(RUNTIME_PINS["network.discovery_port=inf"])
@example('[network]\ndiscovery_port = "22370x"\n')
@example('[network]\ndiscovery_timeout = "soon"\n')
@example(RUNTIME_PINS["network.servers=depth-100000"])
@example(RUNTIME_PINS["central.url=4301-digits"])
@example(RUNTIME_PINS["central.url=invalid-utf8"])
def test_hostile_runtime_config_texts_are_typed_errors(homes, text):
    runtime_reads(homes(text))


@settings(deadline=None)
@given(
    st.one_of(
        st.sampled_from(["lic1", "lic2:22371", "https://[::1]:8443", "http://host/", "[fe80::1]"]).flatmap(near),
        st.text(max_size=40),
    )
)
@pin(["", ":", "[", "[]:1", "a:0", "a:65536", "a:" + "9" * 5000, "a:²", "a:1_0", "https://", "\ud800:1", "a:-1"])
def test_a_server_address_is_parsed_or_a_value_error(text):
    try:
        addr = _servers.parse_server(text)
    except ValueError:
        return
    assert addr.host and 0 < addr.port < 65536 and addr.url.startswith(("http://", "https://"))
    assert all(s.port == addr.port for s in _servers.parse_servers(text)) or "," in text


# ---------------------------------------------------------------- Central's environment

numbers_as_text = st.one_of(
    st.integers().map(str),
    st.sampled_from(
        ["", " 7", "1e3", "nan", "inf", "1" + "0" * 400, "9" * 5000, "0x10", "1_000", "²", "-1", "\ud800", "12\x00"]
    ),
    st.text(max_size=10),
)


def central_settings(env: dict[str, str]) -> None:
    try:
        s = CentralSettings.from_env(env)
    except SettingsError:
        return
    assert all(math.isfinite(v) for v in (s.body_timeout, s.refused_per_second))
    assert s.max_body >= 1024 and s.max_api_body >= 1024 and s.pool_size >= 1 and s.protocol_threads >= 0


@settings(deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(ENV_VARS)), numbers_as_text))
@pin(
    [
        {"LICENTIA_MAX_BODY": "nan"},
        {"LICENTIA_ATTEMPT_WINDOW": "9" * 5000},
        {"LICENTIA_POOL_SIZE": "\ud800"},
        {"LICENTIA_DB_POOL_SIZE": str(2**64)},
        {"LICENTIA_KEYS_DIR": "\x00"},
        {"LICENTIA_DATA": ""},
    ]
)
def test_centrals_environment_gives_settings_or_the_settings_error(env):
    central_settings(env)


@settings(deadline=None, phases=[Phase.explicit])
@given(st.dictionaries(st.sampled_from(sorted(ENV_VARS)), numbers_as_text))
@example({"LICENTIA_BODY_TIMEOUT": "1" + "0" * 400})
def test_a_body_timeout_past_the_floats_is_a_settings_error(env):
    central_settings(env)
