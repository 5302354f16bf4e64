"""Usage events name the seat a lease holds; a pseudonymised log names users, hosts,
addresses and seats by keyed hashes only, and still verifies."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from licentia.core import hazmat
from licentia.core.errors import SettingsError
from licentia.seats.usage import Pseudonymiser, pseudonymised
from tests.conftest import as_nobody
from tests.factory import T0
from tests.seats.helpers import F, acquire, cl, lic

PSEUDONYM = r"~[0-9a-f]{20}"


def bodies(tmp_path: Path) -> list[str]:
    db = sqlite3.connect(tmp_path / "seats.db")
    try:
        return [r[0] for r in db.execute("SELECT body FROM events ORDER BY seq")]
    finally:
        db.close()


def test_events_carry_the_seat_of_their_lease(make, clock):
    eng = make()
    a = acquire(eng, cl(1, user="alice", host="h1"), mode="station")
    b = acquire(eng, cl(2, user="bob", host="h1", machine="130-alice-h1@10.0.0.1"), mode="station")
    c = acquire(eng, cl(3, user="carol", host="h2"))
    eng.release(c.id)
    eng.record_denial(cl(4), firm_code=F, product_code=9, invalid=True, reason="no license")
    events = eng.usage(T0, T0 + 10, events=True)
    access = [e for e in events if e["event"] == "access"]
    assert [e["seat"] for e in access] == [a.seat, b.seat, c.seat]
    assert a.seat == b.seat == "station:130-alice-h1@10.0.0.1"  # one station seat, shared
    assert c.seat == c.id  # a user seat of its own
    release = next(e for e in events if e["event"] == "release")
    assert release["seat"] == c.seat
    deny = next(e for e in events if e["event"] == "deny")
    assert deny["seat"] is None


def test_a_pseudonymised_log_holds_no_real_name_and_verifies(make, clock, key, tmp_path):
    pseudo = Pseudonymiser.from_file(tmp_path / "pseudonym.key")
    eng = make(pseudonymiser=pseudo)
    alice = cl(1, user="alice.smith", host="ws-alice", ip="10.1.2.3")
    lease = acquire(eng, alice, mode="station", licenses=[lic(quantity=1)])
    # refused: the one seat is taken; the reason names the client
    with pytest.raises(Exception, match="in use"):
        acquire(eng, cl(2, user="bob.jones", host="ws-bob", ip="10.9.9.9"), licenses=[lic(quantity=1)])
    eng.release(lease.id)
    eng.record_denial(
        cl(3, user="carol", host="ws-carol", ip="10.7.7.7"), firm_code=F, product_code=9, invalid=True, reason="x"
    )
    texts = bodies(tmp_path)
    assert len(texts) == 4
    whole = "\n".join(texts)
    for real in ("alice.smith", "ws-alice", "10.1.2.3", "bob.jones", "ws-bob", "10.9.9.9", "carol", "ws-carol"):
        assert real not in whole, real
    first = json.loads(texts[0])
    assert first["userIdentification"] == f"{pseudo.pseudonym('alice.smith')}@{pseudo.pseudonym('ws-alice')}"
    assert first["host"] == pseudo.pseudonym("ws-alice") and first["ip"] == pseudo.pseudonym("10.1.2.3")
    assert first["seat"] == pseudo.pseudonym(lease.seat)
    denied = json.loads(texts[1])
    assert pseudo.pseudonym("bob.jones") in denied["reason"]  # the reason keeps its sense, not the name
    assert pseudonymised(texts)
    # the live lease and the status view keep the real names
    assert eng.lease(lease.id).user == "alice.smith" and eng.lease(lease.id).host == "ws-alice"
    result = eng.verify_usage(key.public_key())
    assert result["ok"], result
    assert not eng.verify_usage(hazmat.Ed25519PrivateKey.generate().public_key())["ok"]


def test_the_same_name_gives_the_same_pseudonym_and_another_key_another(tmp_path):
    one = Pseudonymiser.from_file(tmp_path / "a.key")
    again = Pseudonymiser.from_file(tmp_path / "a.key")
    other = Pseudonymiser.from_file(tmp_path / "b.key")
    assert one.pseudonym("alice") == again.pseudonym("alice")
    assert one.pseudonym("alice") != one.pseudonym("alicf")
    assert one.pseudonym("alice") != other.pseudonym("alice")
    assert len(one.pseudonym("alice")) == 21 and one.pseudonym("alice").startswith("~")


def test_a_plain_log_is_not_called_pseudonymised(make, tmp_path):
    eng = make()
    acquire(eng, cl(1))
    assert not pseudonymised(bodies(tmp_path))


def test_the_key_file_is_private_and_a_readable_one_is_refused(tmp_path):
    path = tmp_path / "pseudonym.key"
    Pseudonymiser.from_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_bytes()) == 32
    key = path.read_bytes()
    for mode in (0o640, 0o604, 0o660):
        path.chmod(mode)
        with pytest.raises(SettingsError, match="chmod 600"):
            Pseudonymiser.from_file(path)
        assert path.read_bytes() == key  # left as it was
    path.chmod(0o600)
    path.write_bytes(b"short")
    with pytest.raises(SettingsError, match="not a pseudonym key"):
        Pseudonymiser.from_file(path)


# ---------------------------------------------------------------- as an unprivileged user


def test_as_an_unprivileged_user_the_key_is_private_and_a_readable_one_refused(shared_dir):
    home = shared_dir / "nobody-data"
    code = (
        "import os, sys, stat\n"
        "from pathlib import Path\n"
        "from licentia.seats.usage import Pseudonymiser\n"
        "from licentia.core.errors import SettingsError\n"
        "p = Path(sys.argv[1]) / 'pseudonym.key'\n"
        "Pseudonymiser.from_file(p)\n"
        "print(oct(p.stat().st_mode & 0o777))\n"
        "os.chmod(p, 0o644)\n"
        "try:\n"
        "    Pseudonymiser.from_file(p); print('ACCEPTED')\n"
        "except SettingsError as exc:\n"
        "    print('REFUSED', 'chmod 600' in str(exc))\n"
        "os.chmod(p, 0o600)\n"
    )
    # a data directory of nobody's own
    os.makedirs(home)
    os.chown(home, 65534, 65534)
    out = as_nobody(code, str(home))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["0o600", "REFUSED True"], out.stdout
    # and another unprivileged user cannot read root's key
    mine = shared_dir / "root-data"
    mine.mkdir()
    mine.chmod(0o755)
    Pseudonymiser.from_file(mine / "pseudonym.key")
    read = as_nobody(
        "import sys\ntry:\n    open(sys.argv[1], 'rb').read(); print('READ')\n"
        "except PermissionError:\n    print('DENIED')\n",
        str(mine / "pseudonym.key"),
    )
    assert read.stdout.strip() == "DENIED", read.stderr
