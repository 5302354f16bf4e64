import test from 'node:test';
import assert from 'node:assert/strict';
import { runVectorFile, assertRefused, loadVectors, unknownCase } from './helpers.js';
import { applyUpdate, applyAck, verifyUpdate, digest, DocumentInvalid, ActivationError, keySet } from '../src/index.js';

const vectors = loadVectors('updates.json');
const container = {
  serial: vectors.container.serial,
  signPub: vectors.container.sign_pub,
  boxPrivate: vectors.container.box_private,
};

// The container before each case: `setup` applied to a container without slots
// (the slot's first update: firm_pub is trusted and pinned).
function containerAfterSetup() {
  const r = applyUpdate(vectors.setup, container, {});
  assert.equal(r.firmCode, vectors.firm_code);
  assert.equal(r.slot.seq, vectors.slot_seq);
  assert.deepEqual(Object.keys(r.slot.pinned), [...keySet(vectors.keys).keys()]);
  return { [r.firmCode]: r.slot };
}

// A license the container removes itself (a deactivation, 9.1): the slot drops the entry
// and its keys, records {license id: digest}, adds the id to withdrawn and raises seq.
function removeLicense(slot, licenseId) {
  const entry = slot.entries.find((e) => e.licenseId === licenseId);
  assert.ok(entry, `license ${licenseId} is in the slot`);
  return {
    ...slot,
    seq: slot.seq + 1,
    entries: slot.entries.filter((e) => e !== entry),
    productKeys: slot.productKeys.filter((k) => k.license !== entry.digest),
    removed: { ...slot.removed, [licenseId]: entry.digest },
    withdrawn: [...new Set([...slot.withdrawn, licenseId])].sort((a, b) => a - b),
  };
}

const snapshot = (slots) =>
  JSON.stringify(slots, (k, v) => (v && v.type === 'Buffer' ? Buffer.from(v.data).toString('hex') : v));

function checkAfter(slot, a) {
  assert.equal(slot.firmCode, a.firm_code);
  assert.equal(slot.seq, a.seq);
  assert.equal(slot.vclock, a.vclock);
  assert.equal(slot.lastSync, a.last_sync);
  assert.deepEqual(slot.entries.map((e) => e.licenseId), a.licenses);
  assert.deepEqual(Object.keys(slot.pinned), a.pinned);
  assert.deepEqual(
    slot.productKeys.map((k) => ({ license: k.license, version: k.version, key_hex: k.key.toString('hex') })),
    a.product_keys,
  );
  assert.deepEqual(slot.withdrawn, a.withdrawn);
  assert.deepEqual(slot.notices, a.notices);
  assert.deepEqual(slot.removed, a.removed);
}

runVectorFile('updates.json', (c) => {
  let slots = containerAfterSetup();
  const firm = vectors.firm_code;
  for (const id of c.removed ?? []) slots = { [firm]: removeLicense(slots[firm], id) };
  if (c.kind === 'report-ack') slots = { [firm]: { ...slots[firm], chain: [vectors.newest] } };
  const before = snapshot(slots);
  const apply = c.kind === 'report-ack' ? applyAck : c.kind === 'update' ? applyUpdate : null;
  if (!apply) return unknownCase(c, `kind ${c.kind}`);
  if (c.expect === 'ok') {
    const result = apply(c.document, container, slots);
    if (c.kind === 'update') {
      assert.equal(result.update.digest, c.digest);
    } else {
      assert.equal(result.applied, true);
      assert.equal(result.ack.digest, c.digest);
    }
    assert.equal(digest(c.document), c.digest);
    assert.equal(result.firmCode, c.after.firm_code);
    checkAfter(result.slot, c.after);
  } else if (c.expect === 'stale') {
    const result = applyAck(c.document, container, slots);
    assert.equal(result.applied, false);
  } else if (c.expect === 'invalid') {
    assertRefused(() => apply(c.document, container, slots), DocumentInvalid);
  } else if (c.expect === 'replay' || c.expect === 'other-container') {
    const e = assertRefused(() => apply(c.document, container, slots), ActivationError, c.expect);
    assert.equal(e.code, 30);
  } else {
    unknownCase(c, `expect ${c.expect}`);
  }
  // A refusal changes nothing; applying does not change the slots it was given either.
  assert.equal(snapshot(slots), before);
  return undefined;
});

// verifyUpdate is what an application uses on an update file: steps 1–15 of 7.1 with
// the keys it pins, no sequence number and no unsealing. These are extra checks on the
// vectors' documents, not counted as vector cases.
const byName = Object.fromEntries(vectors.cases.map((c) => [c.name, c]));

test('verifyUpdate: an application verifies the setup and the valid update with its pinned key', () => {
  const setup = verifyUpdate(vectors.setup, vectors.keys, { container });
  assert.equal(setup.seq, vectors.slot_seq);
  const valid = verifyUpdate(byName.valid.document, vectors.keys, { container });
  assert.equal(valid.digest, byName.valid.digest);
  assert.deepEqual(valid.entries.map((e) => e.licenseId), byName.valid.after.licenses);
  assert.equal(valid.time, byName.valid.after.vclock);
});

test('verifyUpdate: refuses what the signature or the pinned key refuses', () => {
  for (const name of ['tampered', 'foreign-firm-key', 'entry-signed-by-foreign-key', 'firm-pub-not-the-signer', 'rotated-key-without-endorsement']) {
    assertRefused(() => verifyUpdate(byName[name].document, vectors.keys), DocumentInvalid, 'invalid');
  }
  assertRefused(() => verifyUpdate(byName['other-container'].document, vectors.keys, { container }), ActivationError, 'other-container');
  // A key endorsed by the pinned key: refused unless the application follows
  // endorsements as a container does.
  assertRefused(() => verifyUpdate(byName['rotated-key-endorsed'].document, vectors.keys), DocumentInvalid, 'invalid');
  verifyUpdate(byName['rotated-key-endorsed'].document, vectors.keys, { followEndorsements: true });
  assertRefused(() => verifyUpdate(byName['endorsement-for-another-firm'].document, vectors.keys, { followEndorsements: true }), DocumentInvalid, 'invalid');
});
