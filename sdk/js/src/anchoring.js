// A license server's usage log as it reaches License Central: usage events (docs/formats.md
// 12.9), the upload a server signs and the anchor Central signs back (12.10).

import { DocumentInvalid, DocumentMalformed } from './errors.js';
import { verifyEnvelope, isPlainObject } from './envelope.js';
import { T, required, optional, has } from './fields.js';
import { parseStrict, canonicalString } from './json.js';
import { sha256 } from './keys.js';

/** The chain's hash before the first event of a log (12.9): 32 zero bytes, in hex. */
export const USAGE_GENESIS = '0'.repeat(64);
/** At most this many events in one upload (12.10). */
export const MAX_UPLOAD_EVENTS = 1000;
/** At most this many bytes of event text in one upload, and in one event (12.10). */
export const MAX_UPLOAD_EVENT_BYTES = 393216;
export const MAX_EVENT_BYTES = 4096;
/** The kinds of event (12.9), and those that end a session. */
export const USAGE_EVENT_KINDS = Object.freeze(['access', 'borrow', 'renew', 'release', 'expire', 'revoke', 'return', 'deny', 'grace', 'lost']);
export const USAGE_FINAL_KINDS = Object.freeze(['release', 'expire', 'revoke', 'return']);

const HASH = /^[0-9a-f]{64}$/;
const WHOLE = T.int(0); // 0 … 2^53 − 1
/** The last second an event's times may name: 9999-12-31T23:59:59 UTC (12.10). */
export const USAGE_MAX_TIME = 253402300799;
const TIME = T.int(0, USAGE_MAX_TIME);

/**
 * The chain's next hash (12.9): lowercase hex SHA-256 of the previous hash's 32 bytes
 * followed by the UTF-8 bytes of the event's body text.
 */
export function usageChain(prevHash, body) {
  if (typeof prevHash !== 'string' || !HASH.test(prevHash)) throw new TypeError('the previous hash is 64 lowercase hex digits');
  if (typeof body !== 'string') throw new TypeError('an event body is a text');
  return sha256(Buffer.concat([Buffer.from(prevHash, 'hex'), Buffer.from(body, 'utf8')])).toString('hex');
}

function text(body, name, limit, seq, { optional: isOptional = false } = {}) {
  const v = has(body, name) ? body[name] : null;
  if (v === null && isOptional) return null;
  // lengths count characters (code points), not UTF-16 units (3.6)
  if (typeof v !== 'string' || [...v].length > limit) throw new DocumentInvalid(`event ${seq}: ${name} is not a text of at most ${limit} characters`);
  return v;
}

function whole(body, name, seq, { optional: isOptional = false, type = WHOLE } = {}) {
  if (isOptional) return optional(body, name, type, null, `event ${seq}: ${name}`);
  return required(body, name, type, `event ${seq}: ${name}`);
}

/**
 * Read one event of an upload (12.10): `textIn` must be the exact canonical JSON text of an
 * event object saying `seq`, every field checked.
 * @returns {{seq, kind, time, leaseId, mode, accessTime, releaseTime, seconds, success, fail,
 *   invalid, firmCode, productCode, featureCode, featureMap, licenseId, user, host, ip, seat,
 *   ticket}}  (licenseId is the event's ticketLicenseId, user its userIdentification)
 * @throws {DocumentInvalid}
 */
export function readUsageEvent(textIn, seq) {
  if (typeof textIn !== 'string' || Buffer.byteLength(textIn, 'utf8') > MAX_EVENT_BYTES) {
    throw new DocumentInvalid(`event ${seq}: not a text of at most ${MAX_EVENT_BYTES} bytes`);
  }
  let body;
  try {
    body = parseStrict(textIn);
  } catch (e) {
    if (e instanceof DocumentMalformed) throw new DocumentInvalid(`event ${seq}: not JSON (${e.reason})`);
    throw e;
  }
  if (!isPlainObject(body)) throw new DocumentInvalid(`event ${seq}: not a JSON object`);
  if (canonicalString(body) !== textIn) throw new DocumentInvalid(`event ${seq}: not canonical JSON`);
  if (body.seq !== seq) throw new DocumentInvalid(`event ${seq}: says another sequence number`);
  const kind = body.event;
  if (typeof kind !== 'string' || !USAGE_EVENT_KINDS.includes(kind)) throw new DocumentInvalid(`event ${seq}: unknown kind`);
  const [success, fail, invalid] = ['success', 'fail', 'invalid'].map((n) => whole(body, n, seq));
  if (![success, fail, invalid].every((f) => f === 0 || f === 1) || success + fail + invalid !== 1) {
    throw new DocumentInvalid(`event ${seq}: exactly one of success, fail and invalid is 1, the others 0`);
  }
  const mode = text(body, 'mode', 16, seq);
  const user = text(body, 'userIdentification', 256, seq);
  const host = text(body, 'host', 256, seq);
  const ip = text(body, 'ip', 256, seq);
  const leaseId = text(body, 'leaseId', 128, seq, { optional: true });
  if (leaseId === null && kind !== 'deny') throw new DocumentInvalid(`event ${seq}: every event but deny names its lease`);
  const accessTime = whole(body, 'accessTime', seq, { type: TIME });
  const releaseTime = whole(body, 'releaseTime', seq, { optional: true, type: TIME });
  const time = whole(body, 'time', seq, { type: TIME });
  if (releaseTime !== null && releaseTime < accessTime) throw new DocumentInvalid(`event ${seq}: released before it was accessed`);
  if (USAGE_FINAL_KINDS.includes(kind) && releaseTime === null && time < accessTime) {
    throw new DocumentInvalid(`event ${seq}: ended before it was accessed`);
  }
  const firmCode = whole(body, 'firmCode', seq);
  T.firmCode(firmCode, `event ${seq}: firmCode`);
  return {
    seq,
    kind,
    time,
    leaseId,
    mode,
    accessTime,
    releaseTime,
    seconds: whole(body, 'seconds', seq, { type: TIME }),
    success,
    fail,
    invalid,
    firmCode,
    productCode: whole(body, 'productCode', seq),
    featureCode: whole(body, 'featureCode', seq),
    featureMap: whole(body, 'featureMap', seq),
    licenseId: whole(body, 'ticketLicenseId', seq),
    user,
    host,
    ip,
    seat: text(body, 'seat', 256, seq, { optional: true }),
    ticket: text(body, 'ticket', 32, seq, { optional: true }),
  };
}

/**
 * Verify a usage upload (12.10) with the server container's key (the one Central recorded
 * for its serial): its signature, its fields, every event, and the chain from base_hash
 * over the event texts to head_hash.
 * @returns {{type, digest, kid, payload, serial, time, baseSeq, baseHash, headSeq, headHash,
 *   pseudonymised, events}}  each event as readUsageEvent reads it, plus `body` (its text)
 *   and `hash` (the chain's hash after it)
 * @throws {DocumentInvalid}
 */
export function verifyUsageUpload(document, containerKey) {
  const v = verifyEnvelope(document, 'usage-upload', containerKey);
  const p = v.payload;
  const out = {
    type: 'usage-upload',
    digest: v.digest,
    kid: v.kid,
    payload: p,
    serial: required(p, 'serial', T.serial),
    time: required(p, 'time', T.time),
    baseSeq: required(p, 'base_seq', T.int(0)),
    baseHash: required(p, 'base_hash', T.digest),
    headSeq: required(p, 'head_seq', T.int()),
    headHash: required(p, 'head_hash', T.digest),
    pseudonymised: required(p, 'pseudonymised', T.bool),
  };
  const bodies = required(p, 'events', T.array);
  if (bodies.length < 1 || bodies.length > MAX_UPLOAD_EVENTS) throw new DocumentInvalid(`an upload holds 1 to ${MAX_UPLOAD_EVENTS} events`);
  // base_seq + n can pass 2^53 − 1, where a number no longer counts exactly; head_seq cannot
  if (out.baseSeq > Number.MAX_SAFE_INTEGER - bodies.length || out.headSeq !== out.baseSeq + bodies.length) {
    throw new DocumentInvalid('head_seq is not base_seq plus the number of events');
  }
  let bytes = 0;
  for (const b of bodies) if (typeof b === 'string') bytes += Buffer.byteLength(b, 'utf8');
  if (bytes > MAX_UPLOAD_EVENT_BYTES) throw new DocumentInvalid(`more than ${MAX_UPLOAD_EVENT_BYTES} bytes of events`);
  let hash = out.baseHash;
  out.events = bodies.map((body, i) => {
    const event = readUsageEvent(body, out.baseSeq + i + 1);
    hash = usageChain(hash, body);
    return { ...event, body, hash };
  });
  if (hash !== out.headHash) throw new DocumentInvalid('the events do not hash to the head the upload states');
  return out;
}

/**
 * Verify a usage anchor (12.10) with the keys of the firm it names that the server's
 * container slot accepts. Whether its hash is the server's own chain's at `seq` is the
 * caller's check.
 * @returns {{type, digest, kid, payload, serial, firmCode, seq, hash, time, upload}}
 * @throws {DocumentInvalid}
 */
export function verifyUsageAnchor(document, keys) {
  const v = verifyEnvelope(document, 'usage-anchor', keys);
  const p = v.payload;
  return {
    type: 'usage-anchor',
    digest: v.digest,
    kid: v.kid,
    payload: p,
    serial: required(p, 'serial', T.serial),
    firmCode: required(p, 'firm_code', T.firmCode),
    seq: required(p, 'seq', T.int(0)),
    hash: required(p, 'hash', T.digest),
    time: required(p, 'time', T.time),
    upload: required(p, 'upload', T.digest),
  };
}
