// Evaluating an access (docs/formats.md section 5).

import {
  LicenseNotFound,
  FeatureNotLicensed,
  ClockTampered,
  LicenseNotYetValid,
  LicenseExpired,
  SyncRequired,
  MaintenanceExpired,
  UnitsExhausted,
  LicenseError,
} from './errors.js';
import { isTimeBound } from './license.js';
import { isFirmCode, isProductCode, isFeature } from './codes.js';

export const CLOCK_TOLERANCE = 7200;

/** The system clock in whole Unix seconds (floored). */
export function nowSeconds() {
  return Math.floor(Date.now() / 1000);
}

function wholeSeconds(value, name) {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new TypeError(`${name} must be a number of seconds`);
  return Math.floor(value);
}

function optionalInt(value, name) {
  if (value === undefined || value === null) return null;
  if (!Number.isSafeInteger(value)) throw new TypeError(`${name} must be an integer or null`);
  return value;
}

const big = (n) => (n === null || n === undefined ? null : BigInt(n));
// A result as a number when it is exact, else as BigInt.
const num = (b) => (b === null ? null : Number.isSafeInteger(Number(b)) ? Number(b) : b);

/** The time an access is evaluated at, and whether the system clock is too far behind (5.2 step 3). */
export function effectiveTime(now, vclock = 0) {
  const n = wholeSeconds(now, 'now');
  const v = wholeSeconds(vclock ?? 0, 'vclock');
  if (BigInt(n) + BigInt(CLOCK_TOLERANCE) < BigInt(v)) return { effectiveTime: v, clockBehind: true };
  return { effectiveTime: Math.max(n, v), clockBehind: false };
}

const maxBig = (a, b) => (a > b ? a : b);

/** Units left on a license before an access: null without a counter (5.2, end). */
export function unitsLeft(license, state = {}) {
  const units = license.options.units;
  if (units === null) return null;
  return num(maxBig(0n, BigInt(units) - BigInt(license.consumedBase) - BigInt(state.unitsUsed ?? 0)));
}

/**
 * Evaluate one verified license entry for one access (5.2).
 *
 * @param license  a verified license (verifyLicense)
 * @param state    what the container recorded under the entry's digest:
 *                 { unitsUsed = 0, firstUse = null, lastSync = null }
 *                 (a verifier without a container passes {})
 * @param request  { firmCode, productCode, featureCode = 0, units = 0, releaseDate = null }
 * @param now      the system clock in Unix seconds (floored to a whole second)
 * @param vclock   the slot's virtual clock; 0 where there is none
 * @returns {{effectiveTime, clockBehind, expires, startUsage, units, unitsLeft}} when granted
 * @throws {LicenseError} LicenseNotFound, FeatureNotLicensed, ClockTampered,
 *         LicenseNotYetValid, LicenseExpired, SyncRequired, MaintenanceExpired or
 *         UnitsExhausted, each with effectiveTime and clockBehind
 */
export function evaluate(license, state, request, now, vclock = 0) {
  const st = state ?? {};
  const unitsUsed = optionalInt(st.unitsUsed, 'state.unitsUsed') ?? 0;
  const stateFirstUse = optionalInt(st.firstUse, 'state.firstUse');
  const lastSync = optionalInt(st.lastSync, 'state.lastSync');
  const req = request ?? {};
  if (!isFirmCode(req.firmCode)) throw new TypeError('request.firmCode must be a firm code');
  if (!isProductCode(req.productCode)) throw new TypeError('request.productCode must be a product code');
  const featureCode = req.featureCode ?? 0;
  if (!isFeature(featureCode)) throw new TypeError('request.featureCode must be 0 … 4294967295');
  const units = req.units ?? 0;
  if (!Number.isSafeInteger(units)) throw new TypeError('request.units must be an integer');
  const releaseDate = optionalInt(req.releaseDate, 'request.releaseDate');

  const opts = license.options;
  const { effectiveTime: tNumber, clockBehind: tampered } = effectiveTime(now, vclock);
  const extra = { effectiveTime: tNumber, clockBehind: tampered };
  const fail = (Cls, message) => {
    throw new Cls(message, extra);
  };
  // Sums such as first use + usage period can leave the range of exact doubles;
  // times and counts are compared as BigInt so that no sum is rounded.
  const t = big(tNumber);

  // 1. Firm and product.
  if (license.firmCode !== req.firmCode || license.productCode !== req.productCode) {
    fail(LicenseNotFound, `no license for firm ${req.firmCode} product ${req.productCode}`);
  }
  // 2. Feature bits (unsigned: JavaScript's & works on signed 32-bit values).
  if ((license.featureMap & featureCode) >>> 0 !== featureCode) {
    fail(FeatureNotLicensed, `feature ${featureCode} is not licensed`);
  }
  // 3–4. Clock.
  if (isTimeBound(opts) && tampered) {
    fail(ClockTampered, 'the system clock is more than 2 hours behind the virtual clock');
  }
  // 5. Not before.
  if (opts.notBefore !== null && t < big(opts.notBefore)) {
    fail(LicenseNotYetValid, `the license is valid from ${opts.notBefore}`);
  }
  // 6. Expiry and usage period.
  let expires = big(opts.expires);
  let startUsage = false;
  if (opts.usagePeriod !== null) {
    let first = big(license.firstUse ?? stateFirstUse);
    if (first === null) {
      first = t;
      startUsage = true;
    }
    const end = first + big(opts.usagePeriod);
    expires = expires === null || end < expires ? end : expires;
  }
  if (expires !== null && t >= expires) fail(LicenseExpired, `the license expired at ${expires}`);
  // 7. Sync interval.
  if (opts.syncInterval !== null) {
    const last = big(lastSync ?? license.issued);
    if (t > last + big(opts.syncInterval)) fail(SyncRequired, 'the sync interval has passed');
  }
  // 8. Maintenance.
  if (releaseDate !== null && opts.maintenanceUntil !== null && releaseDate > opts.maintenanceUntil) {
    fail(MaintenanceExpired, `the release is newer than the maintenance period (${opts.maintenanceUntil})`);
  }
  // 9. Units.
  const left = unitsLeft(license, { unitsUsed });
  if (units < 0) fail(UnitsExhausted, 'a negative number of units');
  if (units > 0) {
    if (opts.units === null) fail(UnitsExhausted, 'the license has no unit counter');
    if (big(units) > big(opts.units) - big(license.consumedBase) - big(unitsUsed)) fail(UnitsExhausted, 'not enough units left');
  }
  // 10. Granted.
  return { effectiveTime: tNumber, clockBehind: tampered, expires: num(expires), startUsage, units, unitsLeft: left };
}

/**
 * Evaluate the entry served with a lease (12.5 step 4, 5.1): at the client's own clock,
 * vclock 0, the lease's first_use, the lease's issue time standing for the last sync,
 * and 0 units.
 * @param license  the served entry, verified against the pinned firm key
 * @param lease    the lease, verified with verifyLease against that entry
 */
export function evaluateLease(license, lease, request, now) {
  const state = { firstUse: lease.firstUse, lastSync: lease.issued };
  return evaluate(license, state, { ...request, units: 0 }, now, 0);
}

/**
 * Evaluate a borrowed license (12.8, 5.1): the evaluation with the grant's issue time as
 * first use and last sync and 0 units, then, in this order, the clock (ClockTampered for
 * every borrowed license), the end of the borrowing (LicenseExpired) and units
 * (UnitsExhausted: a borrowed license carries no counter).
 * @param license  the borrowed entry, verified against the pinned firm key
 * @param grant    the borrow grant, verified with verifyBorrowGrant against that entry
 * @param vclock   the client slot's virtual clock
 */
export function evaluateBorrowed(license, grant, request, now, vclock = 0) {
  const state = { firstUse: grant.issued, lastSync: grant.issued };
  const r = evaluate(license, state, { ...request, units: 0 }, now, vclock);
  const extra = { effectiveTime: r.effectiveTime, clockBehind: r.clockBehind };
  if (r.clockBehind) throw new ClockTampered('the system clock is more than 2 hours behind the virtual clock', extra);
  if (!(BigInt(r.effectiveTime) < BigInt(grant.expires))) throw new LicenseExpired(`the borrowing ended at ${grant.expires}`, extra);
  if ((request?.units ?? 0) !== 0) throw new UnitsExhausted('a borrowed license carries no unit counter', extra);
  const end = r.expires === null || BigInt(grant.expires) < BigInt(r.expires) ? grant.expires : r.expires;
  return { ...r, expires: end };
}

// Rank of each refusal (docs/errors.md): when every candidate is refused, the refusal
// closest to success (the highest rank) is reported.
const RANK = {
  LicenseNotFound: 0,
  DocumentInvalid: 1,
  DocumentMalformed: 1,
  FeatureNotLicensed: 3,
  LicenseNotYetValid: 4,
  LicenseExpired: 5,
  MaintenanceExpired: 6,
  SyncRequired: 7,
  ClockTampered: 8,
  UnitsExhausted: 9,
};

/** Of several refusals, the one closest to success (the first of the highest rank). */
export function closestRefusal(errors) {
  let best = null;
  for (const e of errors) {
    if (best === null || (RANK[e.name] ?? -1) > (RANK[best.name] ?? -1)) best = e;
  }
  return best;
}

/**
 * Find a license that grants an access among verified entries (5.3): entries of another
 * firm or product are not candidates; the first candidate that grants wins; when every
 * candidate is refused, the refusal closest to success is thrown; with no candidate,
 * LicenseNotFound.
 *
 * @param licenses  verified licenses (verifyLicense, or the entries of verifyUpdate)
 * @param request   as for evaluate
 * @param now       the system clock in Unix seconds
 * @param {object} [options]
 * @param {number} [options.vclock=0]  the virtual clock
 * @param {object|function} [options.state={}]  the container's record, or a function
 *        from a license to its record
 * @returns {{license, result}} the license that grants and evaluate's result
 */
export function findLicense(licenses, request, now, { vclock = 0, state = {} } = {}) {
  const refusals = [];
  for (const license of licenses) {
    if (license.firmCode !== request.firmCode || license.productCode !== request.productCode) continue;
    try {
      const st = typeof state === 'function' ? state(license) : state;
      return { license, result: evaluate(license, st, request, now, vclock) };
    } catch (e) {
      if (!(e instanceof LicenseError)) throw e;
      refusals.push(e);
    }
  }
  if (refusals.length) throw closestRefusal(refusals);
  throw new LicenseNotFound(`no license for firm ${request.firmCode} product ${request.productCode}`, effectiveTime(now, vclock));
}
