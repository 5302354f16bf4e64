import test from 'node:test';
import assert from 'node:assert/strict';
import { runVectorFile, assertRefused, loadVectors, unknownCase } from './helpers.js';
import { applyUpdate, verifyUpdate, digest, DocumentInvalid, ActivationError, keySet } from '../src/index.js';

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

const snapshot = (slots) =>
  JSON.stringify(slots, (k, v) => (v && v.type === 'Buffer' ? Buffer.from(v.data).toString('hex') : v));

runVectorFile('updates.json', (c) => {
  const slots = containerAfterSetup();
  const before = snapshot(slots);
  if (c.expect === 'ok') {
    const { firmCode, slot, update } = applyUpdate(c.document, container, slots);
    assert.equal(update.digest, c.digest);
    assert.equal(digest(c.document), c.digest);
    const a = c.after;
    assert.equal(firmCode, a.firm_code);
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
  } else if (c.expect === 'invalid') {
    assertRefused(() => applyUpdate(c.document, container, slots), DocumentInvalid);
  } else if (c.expect === 'replay' || c.expect === 'other-container') {
    const e = assertRefused(() => applyUpdate(c.document, container, slots), ActivationError, c.expect);
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
