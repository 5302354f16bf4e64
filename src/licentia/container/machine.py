"""The machine container: licenses bound to this machine's traits.

Files in ``<home>/containers/<serial>/``:

- ``container.json`` (written once): serial, level, salt, public keys, and the
  container secret (its two private keys) wrapped per trait combination.
- ``state.json``: one slot per firm code (sequence number, virtual clock, last sync,
  pinned firm keys, firm-signed license entries, sealed product keys, per-license
  counters, removed-license tombstones, licenses borrowed from a network license
  server) and an HMAC under a key derived from the
  container secret, so that a hand-edited state is refused.
- ``lock``: flock target; every read-modify-write of state.json holds it.

``MachineContainer.watch`` (``files.StateWatch``) tells the runtime's access cache whether
state.json changed: at once for a write by this process, within ``files.WATCH_NS`` (10 ms)
for a write by another.
"""

from __future__ import annotations

import functools
import hmac
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..core import codes, exchange, hazmat
from ..core import errors as E
from ..core.documents import DocumentInvalid, document_digest
from ..core.encoding import b64d, b64e, canonical
from ..core.license import LicenseEntry
from . import binding, files, graces
from .slot import OBSERVE_STEP as OBSERVE_STEP  # re-exported
from .slot import Slot
from .traits import TraitReader

CONTAINER_FORMAT = "licentia-container/1"
STATE_FORMAT = "licentia-state/1"
_STATE_MAC_INFO = b"licentia state mac v1"
_LOCAL_KEY_INFO = b"licentia local key v1"

_T = TypeVar("_T")


class MachineContainer:
    """A container bound to this machine's traits (``Container`` of ``container.interfaces``).

    It is also the ``Grant`` of the licenses it holds: they are on this machine, never
    lost, and have nothing to give back on release."""

    kind = "machine"
    server: str | None = None
    lost = False

    def __init__(self, path: Path, meta: dict[str, Any], secret: bytes):
        self.path = path
        self.meta = meta
        self.serial: str = meta["serial"]
        self.level: str = meta["level"]
        self._secret = secret
        self._mac_key = hazmat.hkdf(secret, salt=self.serial.encode(), info=_STATE_MAC_INFO)
        # symmetric key for what only this container may read back (local product-key
        # copies, grace records): the hot path then needs no X25519 operation at all
        self._local_key = hazmat.hkdf(secret, salt=self.serial.encode(), info=_LOCAL_KEY_INFO)
        self._state_path = path / "state.json"
        self._state_str = str(self._state_path)  # os.stat on a str skips Path.__fspath__ on the hot path
        #: tells a cache whether state.json changed (this process's writes at once, others' within 10 ms)
        self.watch = files.watch(self._state_str)
        self._lock_path = path / "lock"
        self._cache_key: tuple[int, int, int] | None = None
        self._slots: dict[int, Slot] = {}

    # ------------------------------------------------------------ creation / opening

    @classmethod
    def create(cls, home: Path, level: str, traits: dict[str, str], now: int) -> MachineContainer:
        if level not in exchange.LEVELS:
            raise ValueError(f"binding level is one of {', '.join(exchange.LEVELS)}")
        serial = codes.new_serial(codes.SERIAL_PREFIX_MACHINE)
        sign_key = hazmat.Ed25519PrivateKey.generate()
        box_key = hazmat.X25519PrivateKey.generate()
        secret = hazmat.raw_private(sign_key) + hazmat.raw_private(box_key)
        salt = os.urandom(32)
        meta = {
            "format": CONTAINER_FORMAT,
            "kind": cls.kind,
            "serial": serial,
            "level": level,
            "created": now,
            "salt": b64e(salt),
            "sign_pub": b64e(hazmat.raw_public(sign_key.public_key())),
            "box_pub": b64e(hazmat.raw_public(box_key.public_key())),
            "wraps": binding.wrap(secret, serial=serial, level=level, traits=traits, salt=salt),
        }
        root = home / "containers"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = root / serial
        tmp = root / f".{serial}.tmp"
        tmp.mkdir(mode=0o700)
        files.write_json_atomic(tmp / "container.json", meta)
        container = cls(tmp, meta, secret)
        container._write_state({})
        os.replace(tmp, path)
        return cls(path, meta, secret)

    @classmethod
    def read_meta(cls, path: Path) -> dict[str, Any]:
        return cls._checked(json.loads((path / "container.json").read_bytes()))

    @classmethod
    def _checked(cls, meta: dict[str, Any]) -> dict[str, Any]:
        if meta.get("format") != CONTAINER_FORMAT or meta.get("kind") != cls.kind:
            raise ValueError("not a machine container")
        return meta

    @classmethod
    def open(
        cls, path: Path, traits: TraitReader | dict[str, str], *, meta: dict[str, Any] | None = None
    ) -> MachineContainer:
        """Open a container (``meta``: its container.json, when the caller read it already);
        ContainerLocked when the binding does not match."""
        try:
            meta = cls.read_meta(path) if meta is None else cls._checked(meta)
        except (OSError, ValueError) as exc:
            raise E.rejected(f"container {path.name} unreadable: {exc}") from None
        values = traits() if callable(traits) else traits
        try:
            secret = binding.unwrap(
                meta["wraps"], serial=meta["serial"], level=meta["level"], traits=values, salt=b64d(meta["salt"])
            )
        except binding.BindingMismatch:
            raise E.ContainerLocked(
                f"container {meta['serial']} is bound to another machine, or too many of this machine's "
                "components changed; activate the license again or contact the vendor"
            ) from None
        return cls(path, meta, secret)

    # ------------------------------------------------------------ private keys, loaded on first use

    @functools.cached_property
    def _sign_key(self) -> hazmat.Ed25519PrivateKey:
        key = hazmat.Ed25519PrivateKey.from_private_bytes(self._secret[:32])
        if hazmat.raw_public(key.public_key()) != b64d(self.meta["sign_pub"]):
            raise E.rejected("container keys do not match their public keys")
        return key

    @functools.cached_property
    def _box_key(self) -> hazmat.X25519PrivateKey:
        key = hazmat.X25519PrivateKey.from_private_bytes(self._secret[32:64])
        if hazmat.raw_public(key.public_key()) != b64d(self.meta["box_pub"]):
            raise E.rejected("container keys do not match their public keys")
        return key

    # ------------------------------------------------------------ state

    def _mac(self, body: dict[str, Any]) -> str:
        return b64e(hmac.new(self._mac_key, canonical(body), "sha256").digest())

    def _write_state(self, slots: dict[int, Slot]) -> None:
        body = {"format": STATE_FORMAT, "serial": self.serial, "slots": {str(f): s.to_json() for f, s in slots.items()}}
        files.write_json_atomic(self._state_path, {"body": body, "mac": self._mac(body)})
        self._slots = slots
        self._cache_key = files.stat_key(self._state_str)
        self.watch.wrote(self._cache_key)

    def _read_state(self) -> dict[int, Slot]:
        key = files.stat_key(self._state_str)
        self.watch.saw(key)
        if key is not None and key == self._cache_key:
            return self._slots
        try:
            doc = json.loads(self._state_path.read_bytes())
            body = doc["body"]
            ok = hmac.compare_digest(doc["mac"], self._mac(body))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise E.rejected(f"container {self.serial} state unreadable: {exc}") from None
        if not ok or body.get("serial") != self.serial or body.get("format") != STATE_FORMAT:
            raise E.rejected(f"container {self.serial} state fails its MAC")
        slots = {int(f): Slot.from_json(int(f), s) for f, s in body["slots"].items()}
        self._slots, self._cache_key = slots, key
        return slots

    def slots(self) -> dict[int, Slot]:
        """Current slots (cached while state.json is unchanged)."""
        return self._read_state()

    def mutate(self, change: Callable[[dict[int, Slot]], _T]) -> _T:
        """Run ``change`` on a fresh copy of the slots under the lock; write if it returns
        normally. Every slot the change touched gets a higher generation (unless the
        change raised it itself, to sign it into a document)."""
        with files.locked(self._lock_path):
            self._cache_key = None  # always re-read under the lock
            current = self._read_state()
            before = {f: s.to_json() for f, s in current.items()}
            slots = {f: Slot.from_json(f, json.loads(json.dumps(b))) for f, b in before.items()}
            result = change(slots)
            for f, slot in slots.items():
                old = before.get(f)
                if old is None:
                    slot.gen = max(slot.gen, 1)
                elif slot.gen == old.get("gen", 0) and slot.to_json() != old:
                    slot.gen += 1
            self._write_state(slots)
            return result

    # ------------------------------------------------------------ as a grant

    @property
    def holder(self) -> MachineContainer:
        return self

    grace = 0  # a local license needs no grace from a license server

    def release(self) -> None:
        """A local license has nothing to give back."""

    # ------------------------------------------------------------ keys and documents

    @property
    def sign_pub(self) -> str:
        pub: str = self.meta["sign_pub"]
        return pub

    @property
    def box_pub(self) -> str:
        pub: str = self.meta["box_pub"]
        return pub

    def make_request(
        self, action: str, now: int, *, ticket: str | None = None, firm_code: int | None = None
    ) -> dict[str, Any]:
        """A signed request; records ``now`` as a clock observation in every slot."""

        def change(slots: dict[int, Slot]) -> dict[str, Any]:
            for slot in slots.values():
                slot.vclock = max(slot.vclock, now)
                slot.gen += 1
            doc = exchange.build_request(
                serial=self.serial,
                level=self.level,
                sign_key=self._sign_key,
                box_pub=b64d(self.box_pub),
                slots={f: s.position() for f, s in slots.items()},
                action=action,
                now=now,
                ticket=ticket,
                firm_code=firm_code,
            )
            digest = document_digest(doc)
            for slot in slots.values():
                slot.signed(digest)
            return doc

        return self.mutate(change)

    def apply_update(
        self, data: bytes | str | dict[str, Any], now: int, *, central: str | None = None
    ) -> exchange.Update:
        """Verify and apply an update atomically; nothing changes on any error."""

        def change(slots: dict[int, Slot]) -> exchange.Update:
            try:
                doc = exchange.parse_update_firm(data)
                slot = slots.get(doc)
                update = exchange.verify_update(data, slot.pinned_keys() if slot and slot.pinned else None)
            except DocumentInvalid as exc:
                raise E.rejected(f"update refused: {exc.reason}") from None
            if update.serial != self.serial:
                raise E.ActivationError(
                    f"this update is for container {update.serial}, not {self.serial}: apply it on the machine "
                    "that made the request"
                )
            if any(e.container_key != self.sign_pub for e in update.entries):
                raise E.rejected("update entry names another container key")
            slot = slots.get(update.firm_code) or Slot(firm_code=update.firm_code)
            if update.seq <= slot.seq:
                raise E.ActivationError(
                    f"this update (sequence {update.seq}) is older than the container's state (sequence "
                    f"{slot.seq}): it was applied already or replayed; run 'licentia sync' for a fresh one"
                )
            try:
                keys = exchange.accept_keys(
                    update.firm_code,
                    slot.pinned_keys() or {hazmat.key_id(update.firm_pub): update.firm_pub},
                    list(update.endorsements),
                )
            except DocumentInvalid as exc:
                raise E.rejected(f"update refused: firm key endorsement: {exc.reason}") from None
            removed = dict(slot.removed or {})
            entries = [e for e in update.entries if removed.get(str(e.license_id)) != e.digest]
            digests = {e.digest for e in entries}
            held = {int(d["payload"]["license_id"]): d["payload"] for d in slot.entries or []}
            slot.seq = update.seq
            slot.vclock = update.time  # Central's signed time also corrects a clock that ran ahead
            slot.last_sync = update.time
            slot.central = central or slot.central
            slot.pinned = {kid: b64e(hazmat.raw_public(k)) for kid, k in keys.items()}
            slot.endorsements = list(update.endorsements)
            slot.entries = [e.document for e in entries]
            slot.keys = [self._with_local_copy(k) for k in update.sealed_keys if k["license"] in digests]
            slot.counters = {d: c for d, c in (slot.counters or {}).items() if d in digests}
            ids = {e.license_id for e in entries}
            gone = set(held) - ids
            slot.withdrawn = sorted((set(slot.withdrawn or []) | gone) - ids)
            slot.removed = {lid: d for lid, d in removed.items() if int(lid) not in ids}
            notices = {lid: n for lid, n in (slot.notices or {}).items() if int(lid) not in ids}
            for lid in (update.manipulation or {}).get("withdrawn", []):
                if lid in gone:
                    notices[str(lid)] = {"product_code": held[lid].get("product_code"), "message": update.message}
            slot.notices = notices or None
            slots[update.firm_code] = slot
            return update

        return self.mutate(change)

    def record_access(
        self, entry: LicenseEntry, *, units: int, start_usage: bool, now: int, check: Callable[[Slot], None]
    ) -> Slot:
        """Record what an access must persist (under the entry's digest), re-checking under
        the lock with fresh state."""

        def change(slots: dict[int, Slot]) -> Slot:
            slot = slots[entry.firm_code]
            check(slot)
            rec = dict((slot.counters or {}).get(entry.digest) or {})
            if units:
                rec["units"] = int(rec.get("units", 0)) + units
            if start_usage and rec.get("first_use") is None:
                rec["first_use"] = max(now, slot.vclock)
            rec.setdefault("units", 0)
            rec.setdefault("first_use", None)
            slot.counters = {**(slot.counters or {}), entry.digest: rec}
            slot.vclock = max(slot.vclock, now)
            return slot

        return self.mutate(change)

    def record_online(self, entry: LicenseEntry, online: int, *, start_usage: bool, now: int) -> Slot:
        """Record the units Central counted under ``entry`` (online metering: its answer's total)."""

        def change(slots: dict[int, Slot]) -> Slot:
            slot = slots[entry.firm_code]
            rec = {"units": 0, "first_use": None, **((slot.counters or {}).get(entry.digest) or {})}
            rec["online"] = max(int(rec.get("online", 0)), online)
            if start_usage and rec.get("first_use") is None:
                rec["first_use"] = max(now, slot.vclock)
            slot.counters = {**(slot.counters or {}), entry.digest: rec}
            slot.vclock = max(slot.vclock, now)
            return slot

        return self.mutate(change)

    def apply_ack(self, data: dict[str, Any], now: int) -> bool:
        """Apply Central's acknowledgement of this container's last usage report: its signed
        time counts as a sync, the units it recorded settle the offline allowance. An
        acknowledgement of an older document changes nothing (False)."""

        def change(slots: dict[int, Slot]) -> bool:
            try:
                firm = exchange.parse_update_firm(data)
                slot = slots.get(firm)
                if slot is None:
                    raise DocumentInvalid(f"no slot for firm {firm}")
                keys = exchange.accept_keys(firm, slot.pinned_keys(), list(slot.endorsements or []))
                ack = exchange.verify_ack(data, keys)
            except DocumentInvalid as exc:
                raise E.rejected(f"report acknowledgement refused: {exc.reason}") from None
            if ack.serial != self.serial:
                raise E.rejected(f"report acknowledgement for container {ack.serial}")
            if not slot.chain or slot.chain[0] != ack.request:
                return False
            slot.last_sync = max(slot.last_sync or 0, ack.time)
            slot.vclock = ack.time  # Central's signed time, as an update's
            for digest, units in ack.recorded.items():
                rec = (slot.counters or {}).get(digest)
                if rec is not None:
                    rec["settled"] = max(int(rec.get("settled", 0)), units)
            return True

        return bool(self.mutate(change))

    def observe(self, firm_code: int, now: int) -> None:
        """Record a clock observation in the firm's slot (a refused access saw this time too)."""

        def change(slots: dict[int, Slot]) -> None:
            slot = slots.get(firm_code)
            if slot is not None:
                slot.vclock = max(slot.vclock, now)

        self.mutate(change)

    def remove_license(self, firm_code: int, license_id: int, now: int) -> dict[str, Any]:
        """Remove a license and return the signed receipt that proves it."""

        def change(slots: dict[int, Slot]) -> dict[str, Any]:
            slot = slots.get(firm_code)
            docs = {int(d["payload"]["license_id"]): d for d in (slot.entries or [])} if slot else {}
            if slot is None or license_id not in docs:
                raise E.LicenseNotFound(f"license {license_id} of firm {firm_code} is not in container {self.serial}")
            doc = docs[license_id]
            digest = document_digest(doc)
            counters = slot.position().counters  # the removed license's last counts travel in the receipt
            slot.entries = [d for d in slot.entries or [] if d is not doc]
            slot.keys = [k for k in slot.keys or [] if k.get("license") != digest]
            slot.counters = {k: v for k, v in (slot.counters or {}).items() if k != digest}
            slot.removed = {**(slot.removed or {}), str(license_id): digest}
            slot.withdrawn = sorted(set(slot.withdrawn or []) | {license_id})
            slot.seq += 1  # an old update that still holds this license can no longer be applied
            slot.vclock = max(slot.vclock, now)
            slot.gen += 1
            position = exchange.SlotPosition(slot.seq, slot.vclock, slot.gen, tuple(slot.chain or ()), counters)
            receipt = exchange.build_receipt(
                serial=self.serial,
                sign_key=self._sign_key,
                firm_code=firm_code,
                license_id=license_id,
                ticket=doc["payload"].get("ticket"),
                seq=slot.seq,
                vtime=slot.vclock,
                position=position,
            )
            slot.signed(document_digest(receipt))
            return receipt

        return self.mutate(change)

    #: document types a caller may have this container sign (never requests or receipts)
    SIGNABLE = frozenset(
        {"lease", "borrow", "borrow-return", "usage-head", "usage-upload", "consume", "seat-proof", "cloud-link"}
    )

    def sign(self, doc_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Sign a grant or usage-log document with the container's Ed25519 key.

        A license server signs the leases and borrowed licenses it grants this way: the
        firm-signed entry names this container's key, so every grant verifies back to it.
        """
        if doc_type not in self.SIGNABLE:
            raise ValueError(f"a container does not sign {doc_type!r} documents on request")
        from ..core.documents import FORMAT_VERSION, signing_message

        # the envelope of documents.sign_document, with the key id computed once
        payload = {**payload, "type": doc_type, "v": FORMAT_VERSION}
        kid = self.__dict__.get("_kid")
        if kid is None:
            kid = self._kid = hazmat.key_id(self._sign_key.public_key())
        signature = hazmat.sign(self._sign_key, signing_message(doc_type, payload))
        return {"payload": payload, "kid": kid, "sig": b64e(signature)}

    # ------------------------------------------------------------ a license server's grace

    def hold_grace(self, firm_code: int, record: dict[str, Any], keys: dict[int, bytes], now: int) -> None:
        """Keep a license server's grace (container/graces.py), replacing the record of the
        same server and product; the product keys are sealed to this container."""
        rec = {
            k: record[k]
            for k in ("server", "lease_id", "product_code", "feature_code", "license_id", "stored", "deadline")
        }
        rec["keys"] = [
            {"version": v, "sealed": b64e(self.seal_local(key, graces.context(firm_code, rec, v)))}
            for v, key in sorted(keys.items())
        ]

        def change(slots: dict[int, Slot]) -> None:
            slot = slots.get(firm_code) or Slot(firm_code=firm_code)
            kept = [g for g in slot.graces or [] if not graces.same_product(g, rec) and g["deadline"] > now]
            slot.graces = kept + [rec]
            slot.vclock = max(slot.vclock, now)
            slots[firm_code] = slot

        self.mutate(change)

    def drop_grace(self, firm_code: int, record: dict[str, Any], now: int) -> dict[str, Any]:
        """Remove the grace of the record's server and product (whichever lease wrote it) and
        return the container-signed receipt for the record's lease."""
        from ..core.documents import sign_document

        def change(slots: dict[int, Slot]) -> dict[str, Any]:
            slot = slots.get(firm_code) or Slot(firm_code=firm_code)
            slot.graces = [g for g in slot.graces or [] if not graces.same_product(g, record)] or None
            slot.vclock = max(slot.vclock, now)
            slots[firm_code] = slot
            payload = graces.receipt_payload(self.serial, firm_code, str(record["lease_id"]), slot.vclock)
            return sign_document("grace-return", payload, self._sign_key)

        return self.mutate(change)

    # ------------------------------------------------------------ borrowed licenses

    def add_borrowed(self, firm_code: int, record: dict[str, Any], *, borrow_id: str, vtime: int) -> None:
        """Keep a borrowed license ({"entry", "grant", "keys"}); ``vtime`` (the server's
        signed time) moves the slot's virtual clock forward."""

        def change(slots: dict[int, Slot]) -> None:
            slot = slots.get(firm_code) or Slot(firm_code=firm_code)
            kept = [b for b in slot.borrowed or [] if b.get("id") != borrow_id]
            slot.borrowed = kept + [{**record, "id": borrow_id}]
            slot.vclock = max(slot.vclock, vtime)
            slots[firm_code] = slot

        self.mutate(change)

    def remove_borrowed(self, firm_code: int, borrow_id: str, now: int) -> dict[str, Any]:
        """Remove a borrowed license; return the container-signed return receipt."""

        def change(slots: dict[int, Slot]) -> dict[str, Any]:
            slot = slots.get(firm_code)
            found = [b for b in (slot.borrowed or []) if b.get("id") == borrow_id] if slot else []
            if not found or slot is None:
                raise E.LicenseNotFound(f"borrowed license {borrow_id} is not in container {self.serial}")
            slot.borrowed = [b for b in slot.borrowed or [] if b.get("id") != borrow_id] or None
            slot.vclock = max(slot.vclock, now)
            from ..core.documents import sign_document

            payload = {"serial": self.serial, "borrow_id": borrow_id, "firm_code": firm_code, "vtime": slot.vclock}
            return sign_document("borrow-return", payload, self._sign_key)

        return self.mutate(change)

    def seal_local(self, data: bytes, context: bytes) -> bytes:
        """Seal bytes to this container (only this container, on a machine that opens it, unseals them).

        AES-256-GCM under a key derived from the container secret, ``context`` bound as
        associated data."""
        return hazmat.aead_encrypt(self._local_key, data, b"licentia local|" + context)

    def unseal_local(self, blob: bytes, context: bytes) -> bytes:
        """Inverse of seal_local; raises LicenseInvalid when the blob or context do not match."""
        try:
            return hazmat.aead_decrypt(self._local_key, blob, b"licentia local|" + context)
        except hazmat.CryptoError as exc:
            raise E.rejected(f"container {self.serial}: sealed data refused: {exc}") from None

    @staticmethod
    def _local_context(sealed: dict[str, Any]) -> bytes:
        return f"product key|{sealed.get('license')}|{sealed.get('version')}".encode()

    def _with_local_copy(self, sealed: dict[str, Any]) -> dict[str, Any]:
        """A sealed product key plus a copy under the local key (made once, when applied)."""
        try:
            key = exchange.unseal_product_key(self._box_key, self.serial, sealed)
        except DocumentInvalid as exc:
            raise E.rejected(f"update refused: product key: {exc.reason}") from None
        return {**sealed, "local": b64e(self.seal_local(key, self._local_context(sealed)))}

    def product_key(self, entry: LicenseEntry, version: int) -> bytes | None:
        slot = self.slots().get(entry.firm_code)
        sealed_keys = list((slot.keys if slot else None) or [])
        for record in (slot.borrowed if slot else None) or []:
            sealed_keys.extend(record.get("keys") or [])
        for sealed in sealed_keys:
            if sealed.get("license") == entry.digest and sealed.get("version") == version:
                if "local" in sealed:
                    return self.unseal_local(b64d(sealed["local"]), self._local_context(sealed))
                try:
                    return exchange.unseal_product_key(self._box_key, self.serial, sealed)
                except DocumentInvalid as exc:
                    raise E.rejected(f"product key: {exc.reason}") from None
        return None
