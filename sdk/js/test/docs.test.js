// The worked examples of docs/formats.md, and a guard that every vector file has a test.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VECTORS_DIR } from './helpers.js';
import {
  parseStrict,
  canonicalize,
  canonicalString,
  pythonFloatRepr,
  JsonFloat,
  normalizeTicketId,
  checkCharacter,
  productKeyContext,
  readEnvelope,
  DocumentInvalid,
  DocumentMalformed,
  MAX_DOCUMENT_BYTES,
} from '../src/index.js';

test('every vector file has a test file', () => {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const files = fs.readdirSync(VECTORS_DIR).filter((f) => f.endsWith('.json'));
  assert.ok(files.length > 0, `no vector files in ${VECTORS_DIR}`);
  for (const f of files) {
    const t = path.join(here, f.replace(/\.json$/, '.test.js'));
    assert.ok(fs.existsSync(t), `no test for ${f}`);
    assert.ok(fs.readFileSync(t, 'utf8').includes(`runVectorFile('${f}'`), `${t} does not run ${f}`);
  }
});

test('formats.md 1.2: the canonical JSON example is 51 bytes', () => {
  const value = parseStrict('{"é": "a\\u0001/", "b": [1, true, null], "10101": 2, "9": 3}');
  const bytes = canonicalize(value);
  assert.equal(bytes.length, 51);
  assert.equal(bytes.toString('utf8'), '{"10101":2,"9":3,"b":[1,true,null],"é":"a\\u0001/"}');
  // A JavaScript object with the same members enumerates "9" before "10101"; the
  // canonical form still sorts them as text.
  assert.deepEqual(Object.keys({ 9: 3, 10101: 2 }), ['9', '10101']);
  assert.equal(canonicalString({ 9: 3, 10101: 2 }), '{"10101":2,"9":3}');
});

test('formats.md 1.2 item 9: floats as Python writes them', () => {
  const cases = [
    [1e16, '1e+16'],
    [1.5e-7, '1.5e-07'],
    [100, '100.0'],
    [-0, '-0.0'],
    [0.1, '0.1'],
    [1e15, '1000000000000000.0'],
    [0.0001, '0.0001'],
    [0.00001, '1e-05'],
    [1.7976931348623157e308, '1.7976931348623157e+308'],
    [123456789012345678, '1.2345678901234568e+17'],
  ];
  for (const [x, text] of cases) assert.equal(pythonFloatRepr(x), text);
  assert.equal(canonicalString(new JsonFloat(100)), '100.0');
  assert.equal(canonicalString(-0), '0');
});

test('formats.md 2.2: the worked examples of the check character', () => {
  assert.equal(checkCharacter('7K2MQX4V9TBA7K2MQX4V9TBA'), '3');
  assert.equal(normalizeTicketId('7k2mq x4v9t ba7k2 mqx4v 9tba3'), '7K2MQ-X4V9T-BA7K2-MQX4V-9TBA3');
  assert.equal(checkCharacter('0'.repeat(24)), '0');
  assert.equal(checkCharacter(`${'0'.repeat(23)}1`), '2');
});

test('formats.md 2.2: the check catches every single substitution and every transposition', () => {
  const base = 'TW1ZEGBK0E2AE0MERSVE02PG4';
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  for (let i = 0; i < 25; i++) {
    for (const ch of alphabet) {
      if (ch === base[i]) continue;
      const typo = base.slice(0, i) + ch + base.slice(i + 1);
      assert.throws(() => normalizeTicketId(typo));
    }
    for (let j = i + 1; j < 25; j++) {
      if (base[i] === base[j]) continue;
      const chars = [...base];
      [chars[i], chars[j]] = [chars[j], chars[i]];
      assert.throws(() => normalizeTicketId(chars.join('')));
    }
  }
});

test('formats.md 8.2: the context example', () => {
  const d = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08';
  assert.equal(productKeyContext('130-7K2M-QX4V-9TBA', d, 1), `licentia product key|130-7K2M-QX4V-9TBA|${d}|1`);
});

test('formats.md 3.1: a document text over 4 MiB is refused before it is read', () => {
  const text = `{"payload": {"type": "license", "v": 1, "pad": "${'x'.repeat(MAX_DOCUMENT_BYTES)}"}, "kid": "", "sig": ""}`;
  const e = assert.throws(() => readEnvelope(text), DocumentInvalid);
  void e;
  // Measured in UTF-8 bytes, not characters: 2^21 two-byte characters are 4 MiB of text.
  const wide = `{"payload": {"type": "license", "v": 1, "pad": "${'é'.repeat(MAX_DOCUMENT_BYTES / 2)}"}, "kid": "", "sig": ""}`;
  assert.ok(wide.length < MAX_DOCUMENT_BYTES);
  assert.throws(() => readEnvelope(wide), (err) => err instanceof DocumentInvalid && !(err instanceof DocumentMalformed));
});

test('formats.md 1.1: a value read from text keeps floats apart from integers', () => {
  const v = parseStrict('{"a": 1.0, "b": 1, "c": -0, "d": 9007199254740993}');
  assert.ok(v.a instanceof JsonFloat);
  assert.equal(v.b, 1);
  assert.ok(Object.is(v.c, 0));
  assert.equal(v.d, 9007199254740993n);
  const proto = parseStrict('{"__proto__": {"x": 1}}');
  assert.deepEqual(Object.keys(proto), ['__proto__']);
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
  assert.equal(canonicalString(proto), '{"__proto__":{"x":1}}');
});
