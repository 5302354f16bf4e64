// The other signed documents: requests and slot positions (section 6), receipts,
// acknowledgements, online metering, product-key documents (section 9), and the
// license server's leases, borrow grants, receipts, seat proofs and proofs of
// possession (section 12).

import { DocumentInvalid, DocumentMalformed } from './errors.js';
import { readEnvelope, verifyEnvelope, signingInput, isPlainObject } from './envelope.js';
import { T, required, optional, has } from './fields.js';
import { keySet, ed25519Verify } from './keys.js';
import { decodeBase64url, encodeBase64url } from './base64url.js';

const b64text = (n) => (v, name) => {
  T.b64(n)(v, name);
  return v;
};

// ---------------------------------------------------------------------------
// 6.1 Slot position

const FIRM_CODE_KEY = /^[1-9][0-9]*$/;

function readCounters(counters, path) {
  T.object(counters, path);
  const out = {};
  for (const d of Object.keys(counters)) {
    T.digest(d, `${path} key`);
    const c = T.object(counters[d], `${path}.${d}`);
    out[d] = {
      units: required(c, 'units', T.int(0), `${path}.${d}.units`),
      firstUse: optional(c, 'first_use', T.time, null, `${path}.${d}.first_use`),
    };
  }
  return out;
}

/** Read a slot position (6.1); also the position fields of a receipt (9.1). */
export function readSlotPosition(pos, path = 'position') {
  const out = {
    seq: required(pos, 'seq', T.int(0), `${path}.seq`),
    vtime: required(pos, 'vtime', T.time, `${path}.vtime`),
    gen: optional(pos, 'gen', T.int(0), null, `${path}.gen`),
  };
  if (out.gen !== null) {
    const prev = required(pos, 'prev', T.arrayOf(T.digest), `${path}.prev`);
    if (prev.length > 8) throw new DocumentInvalid(`${path}.prev: more than 8 digests`);
    out.prev = prev;
    out.counters = readCounters(required(pos, 'counters', T.object, `${path}.counters`), `${path}.counters`);
  }
  return out;
}

// ---------------------------------------------------------------------------
// 6 Request (self-signed)

function readRequestPayload(p) {
  const slotsIn = required(p, 'slots', T.object);
  const slots = new Map();
  for (const key of Object.keys(slotsIn)) {
    if (!FIRM_CODE_KEY.test(key) || Number(key) > 4294967295) throw new DocumentInvalid(`slots: key ${JSON.stringify(key)} is not a firm code`);
    slots.set(Number(key), readSlotPosition(T.object(slotsIn[key], `slots.${key}`), `slots.${key}`));
  }
  const action = required(p, 'action', T.oneOf('activate', 'sync', 'report'));
  const out = {
    serial: required(p, 'serial', T.serial),
    level: required(p, 'level', T.oneOf('loose', 'medium', 'tight')),
    signPub: required(p, 'sign_pub', b64text(32)),
    boxPub: required(p, 'box_pub', b64text(32)),
    slots,
    action,
    ticket: optional(p, 'ticket', T.ticket),
    firmCode: optional(p, 'firm_code', T.firmCode),
    created: required(p, 'created', T.time),
    nonce: required(p, 'nonce', b64text(16)),
  };
  if (action === 'activate' && out.ticket === null) throw new DocumentInvalid('ticket: required to activate');
  if (action === 'report' && out.firmCode === null) throw new DocumentInvalid('firm_code: required for a report');
  return out;
}

/**
 * Verify a request or usage report (section 6): self-signed with its own sign_pub.
 * @returns the fields in camelCase; `slots` is a Map from firm code to position
 */
export function verifyRequest(document) {
  const { payload, envelope } = readEnvelope(document);
  const signPub = required(payload, 'sign_pub', T.b64(32));
  const v = verifyEnvelope(envelope, 'request', [signPub]);
  return { type: 'request', digest: v.digest, kid: v.kid, payload: v.payload, ...readRequestPayload(v.payload) };
}

// ---------------------------------------------------------------------------
// 9.1 Receipt

/** Verify a removal receipt (9.1) with the container key recorded for its serial. */
export function verifyReceipt(document, containerKey) {
  const v = verifyEnvelope(document, 'receipt', containerKey);
  const p = v.payload;
  return {
    type: 'receipt',
    digest: v.digest,
    kid: v.kid,
    payload: p,
    serial: required(p, 'serial', T.serial),
    firmCode: required(p, 'firm_code', T.firmCode),
    licenseId: required(p, 'license_id', T.int()),
    ticket: optional(p, 'ticket', T.string),
    ...readSlotPosition(p, 'receipt'),
  };
}

// ---------------------------------------------------------------------------
// 9.2 Acknowledgement

/**
 * Verify a usage-report acknowledgement (9.2) with the slot's pinned and endorsed keys.
 * @param {{serial?: string}} [options]  serial: refuse one for another container
 */
export function verifyReportAck(document, firmKeys, { serial } = {}) {
  const v = verifyEnvelope(document, 'report-ack', firmKeys);
  const p = v.payload;
  const recordedIn = required(p, 'recorded', T.object);
  const recorded = {};
  for (const d of Object.keys(recordedIn)) recorded[T.digest(d, 'recorded key')] = T.int(0)(recordedIn[d], `recorded.${d}`);
  const out = {
    type: 'report-ack',
    digest: v.digest,
    kid: v.kid,
    payload: p,
    firmCode: required(p, 'firm_code', T.firmCode),
    serial: required(p, 'serial', T.serial),
    time: required(p, 'time', T.time),
    request: required(p, 'request', T.digest),
    recorded,
  };
  if (serial !== undefined && out.serial !== serial) throw new DocumentInvalid('the acknowledgement is for another container');
  return out;
}

// ---------------------------------------------------------------------------
// 9.3 Online metering

/** Verify a `consume` document (9.3) with the container key recorded for its serial. */
export function verifyConsume(document, containerKey) {
  const v = verifyEnvelope(document, 'consume', containerKey);
  const p = v.payload;
  return {
    type: 'consume',
    digest: v.digest,
    kid: v.kid,
    payload: p,
    serial: required(p, 'serial', T.string),
    firmCode: required(p, 'firm_code', T.int()),
    entry: required(p, 'entry', T.digest),
    units: required(p, 'units', T.int(1)),
    key: required(p, 'key', T.stringOfLength(1, 64)),
  };
}

/**
 * Verify a `consumption` answer (9.3) with the firm keys the application pins.
 * @param {{consume?: object}} [options]  consume: the payload (or verified result) of the
 *        consume it answers; serial, entry and key must then be equal
 */
export function verifyConsumption(document, firmKeys, { consume } = {}) {
  const v = verifyEnvelope(document, 'consumption', firmKeys);
  const p = v.payload;
  // serial, entry and key identify the consume it answers; the other fields are written
  // for people (firm_code, license_id, units, left, time) and not read (9.3).
  const out = {
    type: 'consumption',
    digest: v.digest,
    kid: v.kid,
    payload: p,
    serial: required(p, 'serial', T.string),
    entry: required(p, 'entry', T.string),
    key: required(p, 'key', T.string),
    online: required(p, 'online', T.int()),
  };
  if (consume) {
    const c = consume.payload ?? consume;
    for (const f of ['serial', 'entry', 'key']) {
      if (p[f] !== c[f]) throw new DocumentInvalid(`consumption: ${f} differs from the consume`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// 9.5 Product-key document

/**
 * Verify a product-key document (9.5) with the firm key a protected build pins.
 * @param {{firmCode?, productCode?, version?}} [want]  refuse one for another firm,
 *        product or version
 * @returns {{firmCode, productCode, version, key: Buffer}}
 */
export function verifyProductKeyDocument(document, firmKeys, want = {}) {
  const v = verifyEnvelope(document, 'product-key', firmKeys);
  const p = v.payload;
  const out = {
    type: 'product-key',
    digest: v.digest,
    kid: v.kid,
    payload: p,
    firmCode: required(p, 'firm_code', T.firmCode),
    productCode: required(p, 'product_code', T.productCode),
    version: required(p, 'version', T.int(1)),
    key: required(p, 'key', T.b64(32)),
  };
  for (const [f, name] of [['firmCode', 'firm'], ['productCode', 'product'], ['version', 'version']]) {
    if (want[f] !== undefined && want[f] !== out[f]) throw new DocumentInvalid(`the product key is for another ${name}`);
  }
  return out;
}

// ---------------------------------------------------------------------------
// 12 License server

/** The access modes a lease names (12.2). */
export const MODES = Object.freeze(['user', 'station', 'exclusive', 'nolimit']);

function entryKey(entry) {
  // entry: a verified license (verifyLicense)
  return keySet([entry.container.signPub]);
}

/**
 * Verify a lease (12.5) against the verified entry it serves: signed by the entry's
 * container.sign_pub, naming the entry's digest, serial and license id.
 * @param {object} [expect]  values the client asked for, checked when given:
 *        session, holder, nonce, clientLeaseId, firmCode, productCode, mode
 * @returns the lease's fields, with grace = grace_until − issued (0 without grace_until)
 */
export function verifyLease(document, entry, expect = {}) {
  const v = verifyEnvelope(document, 'lease', entryKey(entry));
  const p = v.payload;
  const out = {
    type: 'lease',
    digest: v.digest,
    kid: v.kid,
    payload: p,
    leaseId: required(p, 'lease_id', T.string),
    clientLeaseId: required(p, 'client_lease_id', T.string),
    serial: required(p, 'serial', T.serial),
    license: required(p, 'license', T.digest),
    licenseId: required(p, 'license_id', T.int()),
    firmCode: required(p, 'firm_code', T.firmCode),
    productCode: required(p, 'product_code', T.productCode),
    featureCode: required(p, 'feature_code', T.feature),
    mode: required(p, 'mode', T.oneOf(...MODES)),
    session: required(p, 'session', T.string),
    holder: optional(p, 'holder', T.string),
    nonce: required(p, 'nonce', T.string),
    issued: required(p, 'issued', T.time),
    expires: required(p, 'expires', T.time),
    firstUse: optional(p, 'first_use', T.time),
    graceUntil: optional(p, 'grace_until', T.time),
  };
  out.grace = out.graceUntil === null ? 0 : Math.max(0, out.graceUntil - out.issued);
  if (out.license !== entry.digest || out.serial !== entry.container.serial || out.licenseId !== entry.licenseId) {
    throw new DocumentInvalid('the lease names another license');
  }
  // feature_code is not compared: the evaluation of the entry (evaluateLease) checks the
  // features asked for against its feature_map (12.5).
  for (const f of ['session', 'holder', 'nonce', 'clientLeaseId', 'firmCode', 'productCode', 'mode']) {
    if (expect[f] !== undefined && expect[f] !== out[f]) throw new DocumentInvalid(`the lease's ${f} is not the one asked for`);
  }
  return out;
}

/**
 * Verify a borrow grant (12.8) against the verified entry it lends.
 * @param {{serial?: string, signPub?: string}} [client]  this container: refuse a grant
 *        naming another serial or key
 */
export function verifyBorrowGrant(document, entry, client = {}) {
  const v = verifyEnvelope(document, 'borrow', entryKey(entry));
  const p = v.payload;
  const c = required(p, 'client', T.object);
  const out = {
    type: 'borrow',
    digest: v.digest,
    kid: v.kid,
    payload: p,
    borrowId: required(p, 'borrow_id', T.string),
    serial: required(p, 'serial', T.serial),
    license: required(p, 'license', T.digest),
    licenseId: required(p, 'license_id', T.int()),
    firmCode: required(p, 'firm_code', T.firmCode),
    productCode: required(p, 'product_code', T.productCode),
    client: { serial: required(c, 'serial', T.serial, 'client.serial'), signPub: required(c, 'sign_pub', T.string, 'client.sign_pub') },
    issued: required(p, 'issued', T.time),
    expires: required(p, 'expires', T.time),
  };
  if (out.license !== entry.digest || out.serial !== entry.container.serial || out.licenseId !== entry.licenseId) {
    throw new DocumentInvalid('the grant names another license');
  }
  if (client.serial !== undefined && client.serial !== out.client.serial) throw new DocumentInvalid('the grant is for another container');
  if (client.signPub !== undefined && client.signPub !== out.client.signPub) throw new DocumentInvalid('the grant is for another container key');
  return out;
}

/** Verify a borrow return receipt (12.8) with the client key recorded at borrow time. */
export function verifyBorrowReturn(document, clientKey) {
  const v = verifyEnvelope(document, 'borrow-return', clientKey);
  const p = v.payload;
  return {
    type: 'borrow-return',
    digest: v.digest,
    kid: v.kid,
    payload: p,
    serial: required(p, 'serial', T.serial),
    borrowId: required(p, 'borrow_id', T.string),
    firmCode: required(p, 'firm_code', T.firmCode),
    vtime: required(p, 'vtime', T.time),
  };
}

/** Verify a grace return receipt (12.7) with the sign_pub of the lease's machine proof. */
export function verifyGraceReturn(document, clientKey) {
  const v = verifyEnvelope(document, 'grace-return', clientKey);
  const p = v.payload;
  return {
    type: 'grace-return',
    digest: v.digest,
    kid: v.kid,
    payload: p,
    serial: required(p, 'serial', T.serial),
    leaseId: required(p, 'lease_id', T.string),
    firmCode: required(p, 'firm_code', T.firmCode),
    vtime: required(p, 'vtime', T.time),
  };
}

/**
 * Verify a machine proof (12.4): self-signed with its own sign_pub. The server's own
 * checks (a live challenge, the request's holder) are the caller's.
 */
export function verifySeatProof(document) {
  const { payload, envelope } = readEnvelope(document);
  const signPub = required(payload, 'sign_pub', T.b64(32));
  const v = verifyEnvelope(envelope, 'seat-proof', [signPub]);
  const p = v.payload;
  return {
    type: 'seat-proof',
    digest: v.digest,
    kid: v.kid,
    payload: p,
    serial: required(p, 'serial', T.serial),
    signPub: encodeBase64url(signPub),
    server: has(p, 'server') ? p.server : null,
    nonce: required(p, 'nonce', T.string),
    time: required(p, 'time', T.int()),
    holder: required(p, 'holder', T.string),
  };
}

/** How far a cloud link's time may be from the reader's clock, in seconds (9.6). */
export const CLOUD_LINK_SKEW = 300;

/**
 * Verify a cloud link (9.6): self-signed with its own sign_pub, for a well-formed serial
 * and firm code, a name of 1 to 200 code points with no control character and not only
 * spaces, made within CLOUD_LINK_SKEW seconds of `now`.
 */
export function verifyCloudLink(document, now) {
  const { payload, envelope } = readEnvelope(document);
  const signPub = required(payload, 'sign_pub', T.b64(32));
  const v = verifyEnvelope(envelope, 'cloud-link', [signPub]);
  const p = v.payload;
  const name = required(p, 'name', T.string);
  const points = [...name];
  if (points.length < 1 || points.length > 200 || !name.replace(/ /g, '')) {
    throw new DocumentInvalid('name: 1 to 200 characters, not only spaces');
  }
  for (const c of points) {
    const code = c.codePointAt(0);
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) throw new DocumentInvalid('name: a control character');
  }
  const time = required(p, 'time', T.int());
  if (Math.abs(time - now) > CLOUD_LINK_SKEW) throw new DocumentInvalid(`time: ${time - now} s from the clock`);
  return {
    type: 'cloud-link',
    digest: v.digest,
    kid: v.kid,
    payload: p,
    serial: required(p, 'serial', T.serial),
    signPub: encodeBase64url(signPub),
    firmCode: required(p, 'firm_code', T.firmCode),
    name,
    time,
  };
}

/**
 * Verify a proxy license server's grant (12.13): signed by one of the firm's `firmKeys`,
 * for the container `serial`; members with their devices (serial and key), the license ids
 * proxied, issued and until (until not before issued), refresh and poll (at least 1 s),
 * and the trigger's state digest.
 */
export function verifyProxyGrant(document, firmKeys, serial) {
  const v = verifyEnvelope(document, 'proxy-grant', firmKeys);
  const p = v.payload;
  const named = required(p, 'serial', T.serial);
  if (named !== serial) throw new DocumentInvalid(`serial: for container ${named}, not ${serial}`);
  const members = required(p, 'members', T.array).map((m) => {
    T.object(m, 'members[]');
    const devices = required(m, 'devices', T.array).map((d) => {
      T.object(d, 'devices[]');
      return { serial: required(d, 'serial', T.string), signPub: required(d, 'sign_pub', T.string) };
    });
    return { login: required(m, 'login', T.string), devices };
  });
  const licenses = required(p, 'licenses', T.array).map((x) => {
    T.object(x, 'licenses[]');
    return required(x, 'license_id', T.int());
  });
  const issued = required(p, 'issued', T.int());
  const until = required(p, 'until', T.int());
  if (until < issued) throw new DocumentInvalid('until: before issued');
  return {
    type: 'proxy-grant',
    digest: v.digest,
    kid: v.kid,
    payload: p,
    firmCode: required(p, 'firm_code', T.firmCode),
    serial: named,
    group: required(p, 'group', T.string),
    proxy: required(p, 'proxy', T.string),
    members,
    licenses,
    issued,
    until,
    refresh: Math.max(1, required(p, 'refresh', T.int())),
    poll: Math.max(1, required(p, 'poll', T.int())),
    state: required(p, 'state', T.string),
  };
}

// ---------------------------------------------------------------------------
// 12.3 Proofs of possession

const LEASE_REQUEST_FIELDS = ['client_lease_id', 'nonce', 'session', 'holder', 'firm_code', 'product_code', 'feature_code', 'units', 'mode', 'reconnect'];

/** The payload a lease-request proof covers, built from the access request body (12.3). */
export function leaseRequestProofPayload(body) {
  const out = {};
  for (const f of LEASE_REQUEST_FIELDS) out[f] = has(body, f) ? body[f] : null;
  for (const f of ['grace', 'counter', 'machine']) if (has(body, f)) out[f] = body[f];
  return out;
}

/**
 * Verify a proof of possession (12.3): a holder's Ed25519 signature, in base64url, over
 * "licentia/" ‖ kind ‖ LF ‖ canonical(payload).
 * @throws {DocumentInvalid}
 */
export function verifyProof(kind, payload, proof, holder) {
  let holderKey;
  let signature;
  try {
    holderKey = decodeBase64url(holder);
    signature = decodeBase64url(proof);
  } catch (e) {
    if (e instanceof DocumentMalformed) throw new DocumentInvalid(`proof: ${e.reason}`);
    throw e;
  }
  if (holderKey.length !== 32) throw new DocumentInvalid('proof: the holder key is not 32 bytes');
  if (!ed25519Verify(holderKey, signingInput(kind, payload), signature)) throw new DocumentInvalid('proof: the signature does not verify');
  return true;
}

/** Verify the proof of an access request (12.3), with the request's own holder key. */
export function verifyLeaseRequestProof(body) {
  if (!isPlainObject(body)) throw new DocumentInvalid('the access request is not an object');
  if (typeof body.proof !== 'string' || typeof body.holder !== 'string') throw new DocumentInvalid('the access request has no proof or holder');
  return verifyProof('lease-request', leaseRequestProofPayload(body), body.proof, body.holder);
}

/** Verify a renewal or release proof (12.3) over {lease_id, counter}. */
export function verifyLeaseCounterProof(kind, { leaseId, counter, proof, holder }) {
  if (kind !== 'lease-renew' && kind !== 'lease-release') throw new TypeError('kind is lease-renew or lease-release');
  return verifyProof(kind, { lease_id: leaseId, counter }, proof, holder);
}

