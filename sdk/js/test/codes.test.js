import test from 'node:test';
import assert from 'node:assert/strict';
import { runVectorFile, assertRefused, unknownCase } from './helpers.js';
import {
  ALPHABET,
  checkCharacter,
  normalizeTicketId,
  checkTicketId,
  isCanonicalTicketId,
  checkSerial,
  isSerial,
  checkItemId,
  isItemId,
  normalizeItemId,
  checkFirmCode,
  checkProductCode,
  checkFeature,
  InvalidCode,
} from '../src/index.js';

const CHECKS = {
  serial: [checkSerial, isSerial],
  item_id: [checkItemId, isItemId],
  firm_code: [checkFirmCode],
  product_code: [checkProductCode],
  feature: [checkFeature],
};

const data = runVectorFile('codes.json', (c) => {
  if (c.kind === 'ticket') {
    if (c.expect === 'valid') {
      const normalized = normalizeTicketId(c.input);
      assert.equal(normalized, c.normalized);
      assert.equal(checkTicketId(c.input), true);
      assert.equal(isCanonicalTicketId(normalized), true);
      assert.equal(isCanonicalTicketId(c.input), c.input === normalized);
      const chars = normalized.replace(/-/g, '');
      assert.equal(checkCharacter(chars.slice(0, 24)), chars[24]);
      if (c.name.endsWith('-not-caught')) {
        // A typo the check cannot catch reads as another valid ticket id.
        assert.notEqual(normalized, c.intended);
        assert.equal(normalizeTicketId(c.intended), c.intended);
      } else if (c.intended !== undefined) {
        assert.equal(normalized, c.intended);
      }
    } else if (c.expect === 'invalid') {
      assertRefused(() => normalizeTicketId(c.input), InvalidCode, 'invalid');
      assert.equal(checkTicketId(c.input), false);
      assert.equal(isCanonicalTicketId(c.input), false);
      if (c.intended !== undefined) assert.equal(normalizeTicketId(c.intended), c.intended);
    } else {
      unknownCase(c, `expect ${c.expect}`);
    }
    return undefined;
  }
  if (c.kind === 'item_id_given') {
    if (c.expect === 'valid') assert.equal(normalizeItemId(c.input), c.normalized);
    else if (c.expect === 'invalid') assertRefused(() => normalizeItemId(c.input), InvalidCode, 'invalid');
    else unknownCase(c, `expect ${c.expect}`);
    return undefined;
  }
  const checks = CHECKS[c.kind];
  if (!checks) return unknownCase(c, `kind ${c.kind}`);
  const [check, predicate] = checks;
  if (c.expect === 'valid') {
    assert.equal(check(c.input), c.input);
    if (predicate) assert.equal(predicate(c.input), true);
  } else if (c.expect === 'invalid') {
    assertRefused(() => check(c.input), InvalidCode, 'invalid');
    if (predicate) assert.equal(predicate(c.input), false);
  } else {
    unknownCase(c, `expect ${c.expect}`);
  }
  return undefined;
});

test('codes.json: alphabet', () => {
  assert.equal(data.alphabet, ALPHABET);
});
