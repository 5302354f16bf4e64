import test from 'node:test';
import assert from 'node:assert/strict';
import { runVectorFile, assertRefused, loadVectors, unknownCase } from './helpers.js';
import {
  verifyLicense,
  verifyLease,
  verifyBorrowGrant,
  verifyBorrowReturn,
  verifyGraceReturn,
  verifySeatProof,
  verifyCloudLink,
  verifyProxyGrant,
  verifyLeaseRequestProof,
  verifyLeaseCounterProof,
  leaseRequestProofPayload,
  digest,
  DocumentInvalid,
} from '../src/index.js';

const vectors = loadVectors('grants.json');
const entries = Object.fromEntries(
  Object.entries(vectors.entries).map(([name, e]) => [name, verifyLicense(e.document, vectors.keys)]),
);

test('grants.json: the served entries verify with the firm key and name the server', () => {
  for (const [name, e] of Object.entries(vectors.entries)) {
    assert.equal(entries[name].digest, e.digest);
    assert.equal(entries[name].container.serial, vectors.server.serial);
    assert.equal(entries[name].container.signPub, vectors.server.sign_pub);
  }
});

const FIELDS = {
  lease: { lease_id: 'leaseId', grace: 'grace', holder: 'holder', grace_until: 'graceUntil' },
  borrow: { borrow_id: 'borrowId', client_serial: (v) => v.client.serial, client_key: (v) => v.client.signPub },
  'borrow-return': { borrow_id: 'borrowId', serial: 'serial' },
  'grace-return': { lease_id: 'leaseId', serial: 'serial' },
  'seat-proof': { serial: 'serial', sign_pub: 'signPub', server: 'server', nonce: 'nonce', time: 'time', holder: 'holder' },
  'cloud-link': { serial: 'serial', sign_pub: 'signPub', firm_code: 'firmCode', name: 'name', time: 'time' },
  'proxy-grant': { serial: 'serial', group: 'group', proxy: 'proxy', until: 'until', refresh: 'refresh', poll: 'poll', state: 'state' },
};

function documentVerifier(c) {
  switch (c.type) {
    case 'lease':
      return (doc) => verifyLease(doc, entries[c.entry]);
    case 'borrow':
      return (doc) => verifyBorrowGrant(doc, entries[c.entry]);
    case 'borrow-return':
      return (doc) => verifyBorrowReturn(doc, c.client_key);
    case 'grace-return':
      return (doc) => verifyGraceReturn(doc, c.client_key);
    case 'seat-proof':
      return (doc) => verifySeatProof(doc);
    case 'cloud-link':
      return (doc) => verifyCloudLink(doc, c.now);
    case 'proxy-grant':
      return (doc) => verifyProxyGrant(doc, vectors.keys, c.serial);
    default:
      return null;
  }
}

function proofCheck(c) {
  if (c.kind === 'lease-request') {
    if (c.signed_payload !== undefined) assert.deepEqual(leaseRequestProofPayload(c.body), c.signed_payload);
    return () => verifyLeaseRequestProof(c.body);
  }
  if (c.kind === 'lease-renew' || c.kind === 'lease-release') {
    assert.deepEqual({ lease_id: c.lease_id, counter: c.counter }, c.signed_payload);
    return () => verifyLeaseCounterProof(c.kind, { leaseId: c.lease_id, counter: c.counter, proof: c.proof, holder: c.holder });
  }
  return null;
}

runVectorFile('grants.json', (c) => {
  if (c.type === 'proof') {
    const check = proofCheck(c);
    if (!check) return unknownCase(c, `proof kind ${c.kind}`);
    if (c.expect === 'ok') assert.equal(check(), true);
    else if (c.expect === 'invalid') assertRefused(check, DocumentInvalid, 'invalid');
    else unknownCase(c, `expect ${c.expect}`);
    return undefined;
  }
  const verify = documentVerifier(c);
  if (!verify) return unknownCase(c, `type ${c.type}`);
  if (c.entry !== undefined) assert.ok(entries[c.entry], `entry ${c.entry}`);
  if (c.expect === 'invalid') {
    assertRefused(() => verify(c.document), DocumentInvalid);
    return undefined;
  }
  if (c.expect !== 'ok') return unknownCase(c, `expect ${c.expect}`);
  const v = verify(c.document);
  assert.equal(v.digest, c.digest);
  assert.equal(digest(c.document), c.digest);
  for (const [k, expected] of Object.entries(c.fields ?? {})) {
    const f = FIELDS[c.type]?.[k];
    if (f === undefined) return unknownCase(c, `field ${k}`);
    assert.deepEqual(typeof f === 'function' ? f(v) : v[f], expected, `field ${k}`);
  }
  return undefined;
});

// Evaluating what a lease or a borrow grant serves (5.1, 12.5, 12.8): evaluation.json,
// cases of kind lease and borrowed.
