// anchoring.json: usage uploads (verified with the server container's key) and usage
// anchors (verified with the firm's keys), docs/formats.md 12.9 and 12.10.

import test from 'node:test';
import assert from 'node:assert/strict';
import { runVectorFile, assertRefused, unknownCase } from './helpers.js';
import { verifyUsageUpload, verifyUsageAnchor, usageChain, digest, DocumentInvalid, USAGE_EVENT_KINDS } from '../src/index.js';

const SEQ_MARK = '@SEQ@';

/** An upload given in parts: the envelope without its events, one event text with @SEQ@, the count. */
function uploadFromParts(parts) {
  const doc = structuredClone(parts.document);
  assert.ok(!Object.prototype.hasOwnProperty.call(doc.payload, 'events'));
  assert.equal(parts.event.split(SEQ_MARK).length, 2, 'the template holds @SEQ@ once');
  const first = doc.payload.base_seq + 1;
  doc.payload.events = Array.from({ length: parts.count }, (_, i) => parts.event.replace(SEQ_MARK, String(first + i)));
  return doc;
}

// The vectors name a field as licentia's reader does; this package in camelCase.
const UPLOAD_FIELDS = {
  serial: 'serial',
  time: 'time',
  base_seq: 'baseSeq',
  base_hash: 'baseHash',
  head_seq: 'headSeq',
  head_hash: 'headHash',
  pseudonymised: 'pseudonymised',
};
const ANCHOR_FIELDS = { serial: 'serial', firm_code: 'firmCode', seq: 'seq', hash: 'hash', time: 'time', upload: 'upload' };
const EVENT_FIELDS = {
  seq: 'seq',
  kind: 'kind',
  time: 'time',
  lease_id: 'leaseId',
  mode: 'mode',
  access_time: 'accessTime',
  release_time: 'releaseTime',
  seconds: 'seconds',
  success: 'success',
  fail: 'fail',
  invalid: 'invalid',
  firm_code: 'firmCode',
  product_code: 'productCode',
  feature_code: 'featureCode',
  feature_map: 'featureMap',
  license_id: 'licenseId',
  user: 'user',
  host: 'host',
  ip: 'ip',
  seat: 'seat',
  ticket: 'ticket',
};

const seenKinds = new Set();

function checkFields(c, got, names) {
  for (const [k, expected] of Object.entries(c.fields ?? {})) {
    if (!names[k]) return unknownCase(c, `field ${k}`);
    assert.equal(got[names[k]], expected, `field ${k}`);
  }
  return undefined;
}

const data = runVectorFile('anchoring.json', (c, d) => {
  const doc = c.document_parts ? uploadFromParts(c.document_parts) : c.document;
  let verify;
  if (c.type === 'usage-upload') verify = () => verifyUsageUpload(doc, d.container_key);
  else if (c.type === 'usage-anchor') verify = () => verifyUsageAnchor(doc, d.keys);
  else return unknownCase(c, `type ${c.type}`);
  if (c.expect === 'invalid') {
    assertRefused(verify, DocumentInvalid, undefined);
    return undefined;
  }
  if (c.expect !== 'ok') return unknownCase(c, `expect ${c.expect}`);
  const got = verify();
  assert.equal(got.digest, c.digest);
  assert.equal(digest(doc), c.digest);
  if (c.type === 'usage-anchor') return checkFields(c, got, ANCHOR_FIELDS);
  checkFields(c, got, UPLOAD_FIELDS);
  assert.equal(got.events.length, got.headSeq - got.baseSeq);
  assert.equal(got.events.at(-1).hash, got.headHash);
  if (c.chain) {
    assert.deepEqual(got.events.map((e) => e.hash), c.chain);
    // the chain recomputed here from the texts, step by step
    let prev = got.baseHash;
    for (const [i, e] of got.events.entries()) {
      prev = usageChain(prev, doc.payload.events[i]);
      assert.equal(prev, c.chain[i]);
      assert.equal(e.body, doc.payload.events[i]);
    }
  }
  if (c.events) {
    assert.equal(got.events.length, c.events.length);
    for (const [i, want] of c.events.entries()) {
      seenKinds.add(want.kind);
      for (const [k, expected] of Object.entries(want)) {
        if (!EVENT_FIELDS[k]) return unknownCase(c, `event field ${k}`);
        assert.equal(got.events[i][EVENT_FIELDS[k]], expected, `event ${i + 1}: ${k}`);
      }
    }
  }
  return undefined;
});


test('anchoring.json: the valid uploads hold every kind of event', () => {
  assert.deepEqual([...seenKinds].sort(), [...USAGE_EVENT_KINDS].sort());
  assert.equal(data.genesis, '0'.repeat(64));
});

test('anchoring.json: the anchor answers the upload it names', () => {
  const byName = Object.fromEntries(data.cases.map((c) => [c.name, c]));
  const upload = verifyUsageUpload(byName['upload-next-every-kind'].document, data.container_key);
  const anchor = verifyUsageAnchor(byName['anchor-valid'].document, data.keys);
  assert.deepEqual([anchor.serial, anchor.seq, anchor.hash, anchor.upload], [upload.serial, upload.headSeq, upload.headHash, upload.digest]);
});
