import test from 'node:test';
import assert from 'node:assert/strict';
import { runVectorFile, assertRefused, unknownCase } from './helpers.js';
import { verifyLicense, evaluate, effectiveTime, unitsLeft, LicenseError, CLOCK_TOLERANCE } from '../src/index.js';

const data = runVectorFile('evaluation.json', (c, d) => {
  const license = verifyLicense(c.license, d.keys);
  assert.equal(license.digest, c.digest);
  const state = { unitsUsed: c.state.units_used, firstUse: c.state.first_use, lastSync: c.state.last_sync };
  const request = {
    firmCode: c.request.firm_code,
    productCode: c.request.product_code,
    featureCode: c.request.feature_code,
    units: c.request.units,
    releaseDate: c.request.release_date,
  };
  const vclock = c.state.vclock;
  assert.deepEqual(effectiveTime(c.now, vclock), { effectiveTime: c.effective_time, clockBehind: c.clock_behind });
  if (c.units_left !== undefined) assert.equal(unitsLeft(license, state), c.units_left);

  if (c.expect === 'ok') {
    const r = evaluate(license, state, request, c.now, vclock);
    assert.equal(r.effectiveTime, c.effective_time);
    assert.equal(r.clockBehind, c.clock_behind);
    assert.equal(r.expires, c.expires);
    assert.equal(r.startUsage, c.start_usage);
    assert.equal(r.units, c.units);
    if (c.units_left !== undefined) assert.equal(r.unitsLeft, c.units_left);
  } else {
    const outcome = d.outcomes[c.expect];
    if (!outcome || outcome.code === undefined) return unknownCase(c, `expect ${c.expect}`);
    const e = assertRefused(() => evaluate(license, state, request, c.now, vclock), LicenseError, c.expect);
    assert.equal(e.name, c.expect);
    assert.equal(e.code, outcome.code);
    assert.equal(e.effectiveTime, c.effective_time);
    assert.equal(e.clockBehind, c.clock_behind);
  }
  return undefined;
});

test('evaluation.json: clock tolerance', () => {
  assert.equal(data.clock_tolerance, CLOCK_TOLERANCE);
});
