import assert from 'node:assert/strict';
import { runVectorFile, assertRefused, unknownCase } from './helpers.js';
import {
  verifyRequest,
  verifyReceipt,
  verifyReportAck,
  verifyConsume,
  verifyConsumption,
  canonicalString,
  digest,
  DocumentInvalid,
} from '../src/index.js';

const CAMEL = {
  serial: 'serial',
  action: 'action',
  ticket: 'ticket',
  firm_code: 'firmCode',
  license_id: 'licenseId',
  seq: 'seq',
  request: 'request',
  sign_pub: 'signPub',
};

function verifierFor(type, data) {
  switch (type) {
    case 'request':
      return (doc) => verifyRequest(doc);
    case 'receipt':
      return (doc) => verifyReceipt(doc, data.container_key);
    case 'report-ack':
      return (doc) => verifyReportAck(doc, data.keys);
    case 'consume':
      return (doc) => verifyConsume(doc, data.container_key);
    case 'consumption':
      return (doc) => verifyConsumption(doc, data.keys);
    default:
      return null;
  }
}

runVectorFile('container.json', (c, data) => {
  const verify = verifierFor(c.type, data);
  if (!verify) return unknownCase(c, `type ${c.type}`);
  if (c.expect === 'invalid') {
    assertRefused(() => verify(c.document), DocumentInvalid);
    return undefined;
  }
  if (c.expect !== 'ok') return unknownCase(c, `expect ${c.expect}`);
  const v = verify(c.document);
  assert.equal(v.digest, c.digest);
  assert.equal(digest(c.document), c.digest);
  if (c.type === 'request') assert.equal(v.signPub, c.fields?.sign_pub ?? data.container_key, 'self-signed with its sign_pub');
  for (const [k, expected] of Object.entries(c.fields ?? {})) {
    if (k === 'slots') {
      assert.deepEqual([...v.slots.keys()].sort((a, b) => a - b), expected);
      continue;
    }
    if (!CAMEL[k]) return unknownCase(c, `field ${k}`);
    assert.equal(v[CAMEL[k]], expected, `field ${k}`);
  }
  if (c.slot_order !== undefined) {
    // The order of the slot keys in the canonical payload: find each key where the
    // canonical text of `slots` starts a member.
    const text = canonicalString(c.document.payload.slots);
    const positions = c.slot_order.map((k) => text.indexOf(`"${k}":{`));
    assert.ok(positions.every((p) => p >= 0));
    assert.deepEqual([...positions].sort((a, b) => a - b), positions, 'slot keys in the given order');
    assert.equal(c.slot_order.length, Object.keys(c.document.payload.slots).length);
  }
  return undefined;
});
