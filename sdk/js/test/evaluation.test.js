import test from 'node:test';
import assert from 'node:assert/strict';
import { runVectorFile, assertRefused, unknownCase } from './helpers.js';
import {
  verifyLicense,
  verifyLease,
  verifyBorrowGrant,
  evaluate,
  evaluateLease,
  evaluateBorrowed,
  effectiveTime,
  unitsLeft,
  LicenseError,
  DocumentInvalid,
  CLOCK_TOLERANCE,
} from '../src/index.js';

// How each kind of case is evaluated: a license in a container (5.2), a lease (12.5
// step 4) and a borrowed license (12.8), with the state 5.1 derives from the lease or grant.
function evaluator(c, license, state, request) {
  const vclock = c.state.vclock;
  switch (c.kind) {
    case 'license':
      return () => evaluate(license, state, request, c.now, vclock);
    case 'lease': {
      const lease = verifyLease(c.lease, license);
      assert.deepEqual([c.state.units_used, c.state.first_use, c.state.last_sync, vclock], [0, lease.firstUse, lease.issued, 0]);
      return () => evaluateLease(license, lease, request, c.now);
    }
    case 'borrowed':
      return () => {
        // The grant must name this container (serial and key) before anything is evaluated.
        const grant = verifyBorrowGrant(c.grant, license, { serial: c.container.serial, signPub: c.container.sign_pub });
        assert.deepEqual([c.state.units_used, c.state.first_use, c.state.last_sync], [0, grant.issued, grant.issued]);
        return evaluateBorrowed(license, grant, request, c.now, vclock);
      };
    default:
      return null;
  }
}

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
  const run = evaluator(c, license, state, request);
  if (!run) return unknownCase(c, `kind ${c.kind}`);

  if (c.expect === 'ok') {
    const r = run();
    assert.equal(r.effectiveTime, c.effective_time);
    assert.equal(r.clockBehind, c.clock_behind);
    assert.equal(r.expires, c.expires);
    assert.equal(r.startUsage, c.start_usage);
    assert.equal(r.units, c.units);
    if (c.units_left !== undefined) assert.equal(r.unitsLeft, c.units_left);
    return undefined;
  }
  const outcome = d.outcomes[c.expect];
  if (!outcome || outcome.code === undefined) return unknownCase(c, `expect ${c.expect}`);
  if (c.expect === 'LicenseInvalid') {
    // A grant for another container: the document is refused (reported as LicenseInvalid).
    const e = assertRefused(run, DocumentInvalid, 'invalid');
    assert.equal(e.code, outcome.code);
    return undefined;
  }
  const e = assertRefused(run, LicenseError, c.expect);
  assert.equal(e.name, c.expect);
  assert.equal(e.code, outcome.code);
  assert.equal(e.effectiveTime, c.effective_time);
  assert.equal(e.clockBehind, c.clock_behind);
  return undefined;
});

test('evaluation.json: clock tolerance', () => {
  assert.equal(data.clock_tolerance, CLOCK_TOLERANCE);
});
