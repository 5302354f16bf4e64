// Shared by the vector tests: loads a vector file with the package's own strict reader
// and runs every case, counting how many were checked.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseStrict } from '../src/index.js';

export const VECTORS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../tests/vectors');

/**
 * Read a vector file with the strict reader documents are read with (1.1): the files
 * hold no integer beyond 64 bits and nest at most 32 levels. A document the strict
 * reader must refuse is given as its JSON text (updates.json, sequence-beyond-64-bits).
 */
export function loadVectors(name) {
  return parseStrict(fs.readFileSync(path.join(VECTORS_DIR, name)));
}

/** The JSON text of a case given in parts: prefix + fill repeated count times + suffix. */
export function documentText(c) {
  const { prefix, fill, count, suffix } = c.document_text;
  const text = prefix + fill.repeat(count) + suffix;
  assert.equal(Buffer.byteLength(text, 'utf8'), c.document_bytes);
  return text;
}

/** Assert that fn throws an instance of cls; returns the error. */
export function assertRefused(fn, cls, outcome) {
  let error;
  assert.throws(fn, (e) => {
    error = e;
    return true;
  });
  if (!(error instanceof cls)) {
    throw new assert.AssertionError({ message: `expected ${cls.name}, got ${error?.name}: ${error?.stack ?? error}` });
  }
  if (outcome !== undefined) assert.equal(error.outcome, outcome);
  return error;
}

/**
 * Run every case of a vector file. `check(case, data, t)` asserts the case and returns
 * nothing for a fully checked case, or {partial: reason} for a case that can only be
 * checked in part (it is then counted and listed). Every case must be handled: an
 * unknown kind or type has to throw.
 */
export function runVectorFile(name, check) {
  const data = loadVectors(name);
  const cases = data.cases;
  const stats = { total: cases.length, checked: 0, partial: [] };

  test(`${name}: layout`, () => {
    assert.equal(typeof data.description, 'string');
    assert.ok(data.outcomes && typeof data.outcomes === 'object');
    assert.ok(Array.isArray(cases) && cases.length > 0);
    const names = new Set();
    for (const c of cases) {
      assert.equal(typeof c.name, 'string');
      assert.ok(!names.has(c.name), `duplicate case name ${c.name}`);
      names.add(c.name);
      assert.ok(Object.prototype.hasOwnProperty.call(data.outcomes, c.expect), `${c.name}: expect ${c.expect} is not in outcomes`);
    }
  });

  for (const c of cases) {
    test(`${name}: ${c.name} (${c.expect})`, (t) => {
      const result = check(c, data, t);
      stats.checked += 1;
      if (result && result.partial) stats.partial.push(`${c.name}: ${result.partial}`);
    });
  }

  test(`${name}: every case checked`, (t) => {
    const line = `${name}: ${stats.total} cases, ${stats.checked} checked` + (stats.partial.length ? `, ${stats.partial.length} in part` : '');
    t.diagnostic(line);
    for (const p of stats.partial) t.diagnostic(`  checked in part: ${p}`);
    assert.equal(stats.checked, stats.total, 'some cases were not checked');
  });

  return data;
}

/** Fail for a case kind the test does not know, so that no case is skipped silently. */
export function unknownCase(c, what) {
  throw new assert.AssertionError({ message: `${c.name}: no check for ${what}` });
}
