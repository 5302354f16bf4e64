// Updates (docs/formats.md section 7) and firm-key endorsements (9.4).

import { DocumentInvalid, ActivationError } from './errors.js';
import { readEnvelope, verifyEnvelope, isPlainObject } from './envelope.js';
import { T, required, optional, has } from './fields.js';
import { verifyLicense } from './license.js';
import { keyId, keySet } from './keys.js';
import { encodeBase64url } from './base64url.js';
import { unsealProductKey } from './sealing.js';
import { verifyReportAck } from './documents.js';

function keyEntry(raw) {
  return { kid: keyId(raw), raw: Buffer.from(raw), text: encodeBase64url(raw) };
}

/**
 * accept_keys of 9.4: the keys, plus every key endorsed (transitively) by an accepted
 * key through a firm-key document naming this firm. Endorsements that do not verify,
 * or name another firm, are skipped.
 * @param {number} firmCode
 * @param keys  accepted keys (anything keySet reads)
 * @param {Array} endorsements  firm-key documents as JSON objects
 * @returns {Map} kid -> key
 * @throws {DocumentInvalid} when an element is not a JSON object, or a verified
 *         endorsement for this firm holds no valid `pub`
 */
export function acceptKeys(firmCode, keys, endorsements) {
  const accepted = new Map(keySet(keys));
  if (!Array.isArray(endorsements)) throw new DocumentInvalid('endorsements: not an array');
  for (const doc of endorsements) {
    if (!isPlainObject(doc)) throw new DocumentInvalid('endorsements: an element is not a JSON object');
  }
  for (let added = true; added; ) {
    added = false;
    for (const doc of endorsements) {
      let v;
      try {
        v = verifyEnvelope(doc, 'firm-key', accepted);
      } catch (e) {
        if (e instanceof DocumentInvalid) continue;
        throw e;
      }
      if (v.payload.firm_code !== firmCode) continue;
      const pub = required(v.payload, 'pub', T.b64(32), 'endorsement pub');
      const entry = keyEntry(pub);
      if (!accepted.has(entry.kid)) {
        accepted.set(entry.kid, entry);
        added = true;
      }
    }
  }
  return accepted;
}

/**
 * Verify one firm-key endorsement (9.4) for a firm with the keys already accepted.
 * @returns {{firmCode, pub, kid, digest}} the endorsed key
 * @throws {DocumentInvalid} when it does not verify, names another firm, or holds no key
 */
export function verifyEndorsement(document, firmCode, keys) {
  const v = verifyEnvelope(document, 'firm-key', keys);
  const fc = required(v.payload, 'firm_code', T.int());
  if (fc !== firmCode) throw new DocumentInvalid('the endorsement names another firm');
  const pub = required(v.payload, 'pub', T.b64(32));
  return { firmCode: fc, pub: encodeBase64url(pub), kid: keyId(pub), digest: v.digest };
}

function readManipulation(m) {
  if (m === undefined || m === null) return null;
  if (!isPlainObject(m)) throw new DocumentInvalid('manipulation: not an object');
  const out = {};
  for (const k of Object.keys(m)) {
    if (k !== 'rebased' && k !== 'withdrawn') throw new DocumentInvalid(`manipulation.${k}: unknown key`);
    out[k] = T.arrayOf(T.int())(m[k], `manipulation.${k}`);
  }
  return out;
}

// Steps 1–13 of 7.1, shared by verifyUpdate and applyUpdate.
// `pinned` is the slot's pinned key set, or null for a slot's first update.
function readUpdate(document, pinned, followEndorsements = true) {
  // 1. Envelope (read once; the value is verified below).
  const { payload, kid, envelope } = readEnvelope(document);
  // 2. Firm code.
  const firmCode = required(payload, 'firm_code', T.firmCode);
  // 3. firm_pub.
  const firmPub = keyEntry(required(payload, 'firm_pub', T.b64(32)));
  // 4. Endorsements: an array of JSON objects.
  const endorsements = required(payload, 'endorsements', T.array);
  for (const e of endorsements) {
    if (!isPlainObject(e)) throw new DocumentInvalid('endorsements: an element is not a JSON object');
  }
  // 5. Accepted keys.
  let K;
  if (pinned && pinned.size) K = followEndorsements ? acceptKeys(firmCode, pinned, endorsements) : new Map(pinned);
  else K = new Map([[firmPub.kid, firmPub]]);
  // 6. kid is firm_pub's.
  if (kid !== firmPub.kid) throw new DocumentInvalid('kid is not the key id of firm_pub');
  // 7. Signature.
  const v = verifyEnvelope(envelope, 'update', K);
  // 8. Serial.
  const serial = required(payload, 'serial', T.serial);
  // 9. Entries.
  const entries = required(payload, 'entries', T.array).map((e, i) => {
    if (!isPlainObject(e)) throw new DocumentInvalid(`entries[${i}]: not a JSON object`);
    const lic = verifyLicense(e, K);
    if (lic.firmCode !== firmCode) throw new DocumentInvalid(`entries[${i}]: for another firm`);
    if (lic.container.serial !== serial) throw new DocumentInvalid(`entries[${i}]: for another serial`);
    return lic;
  });
  // Each license once (the same digest is the same license id).
  if (new Set(entries.map((e) => e.licenseId)).size !== entries.length) {
    throw new DocumentInvalid('entries: two entries have the same license id');
  }
  // 10. Sealed keys: each names an entry and one of its key versions, each pair once.
  const byDigest = new Map(entries.map((e) => [e.digest, e]));
  const named = new Set();
  const keys = required(payload, 'keys', T.array).map((k, i) => {
    if (!isPlainObject(k)) throw new DocumentInvalid(`keys[${i}]: not a JSON object`);
    const entry = typeof k.license === 'string' ? byDigest.get(k.license) : undefined;
    if (!entry) throw new DocumentInvalid(`keys[${i}]: names no entry of the update`);
    if (typeof k.version !== 'number' || !Number.isSafeInteger(k.version) || !entry.keyVersions.includes(k.version)) {
      throw new DocumentInvalid(`keys[${i}]: names no key version of its entry`);
    }
    if (typeof k.sealed !== 'string') throw new DocumentInvalid(`keys[${i}]: sealed is not a string`);
    const pair = `${k.license}|${k.version}`;
    if (named.has(pair)) throw new DocumentInvalid(`keys[${i}]: a second key for the same entry and version`);
    named.add(pair);
    return k;
  });
  // 11–13. Remaining fields.
  const seq = required(payload, 'seq', T.int(1));
  const time = required(payload, 'time', T.time);
  const request = optional(payload, 'request', T.digest);
  const manipulation = readManipulation(has(payload, 'manipulation') ? payload.manipulation : null);
  const message = optional(payload, 'message', T.string);
  return { payload, digest: v.digest, kid, firmCode, firmPub, endorsements, K, serial, entries, keys, seq, time, request, manipulation, message };
}

function publicView(u) {
  return {
    type: 'update',
    digest: u.digest,
    kid: u.kid,
    payload: u.payload,
    firmCode: u.firmCode,
    firmPub: u.firmPub.text,
    serial: u.serial,
    seq: u.seq,
    time: u.time,
    entries: u.entries,
    keys: u.keys,
    endorsements: u.endorsements,
    request: u.request,
    message: u.message,
    manipulation: u.manipulation,
  };
}

/**
 * Verify an update against the firm keys an application pins: 7.1 steps 1–13 with the
 * pinned keys as the slot's keys, and with `container` also steps 14 and 15.
 *
 * An application verifies every entry against the firm keys it pins itself (section
 * 7.1, "Applications do not rely on the container's pinning"), so by default the
 * update and its entries must be signed by a pinned key; endorsements in the update
 * extend the keys only with `followEndorsements: true`, as a container does.
 *
 * @param document   the update: JSON text, bytes, or the envelope as a value
 * @param pinnedKeys the firm key(s) the application pins (required, non-empty)
 * @param {object} [options]
 * @param {{serial: string, signPub?: string}} [options.container]  this container
 * @param {boolean} [options.followEndorsements=false]
 * @returns the update's fields, with `entries` as verified licenses
 * @throws {DocumentInvalid | ActivationError}
 */
export function verifyUpdate(document, pinnedKeys, { container, followEndorsements = false } = {}) {
  const pinned = keySet(pinnedKeys);
  if (!pinned.size) throw new TypeError('verifyUpdate needs the pinned firm key(s)');
  const u = readUpdate(document, pinned, followEndorsements);
  if (container) {
    if (u.serial !== container.serial) throw new ActivationError('other-container', `the update is for container ${u.serial}, not ${container.serial}`);
    if (container.signPub !== undefined) {
      for (const e of u.entries) {
        if (e.container.signPub !== container.signPub) throw new DocumentInvalid('an entry names another container key');
      }
    }
  }
  return publicView(u);
}

function slotOf(slots, firmCode) {
  if (!slots) return undefined;
  if (slots instanceof Map) return slots.get(firmCode) ?? slots.get(String(firmCode));
  return slots[firmCode];
}

function pinnedMap(pinned) {
  if (!pinned) return new Map();
  if (pinned instanceof Map) return keySet(pinned);
  // {kid: base64url key}: the kid is recomputed from the key.
  return keySet(Object.values(pinned));
}

/**
 * Apply an update as a container does (7.1, all steps), without storing anything: the
 * caller keeps the returned slot. Nothing is changed on a refusal.
 *
 * @param document  the update
 * @param {object} container  { serial, signPub (base64url text), boxPrivate } where
 *        boxPrivate is the X25519 private key (32 bytes, or base64url) or the 64-byte
 *        container secret
 * @param slots  the container's firm slots: an object or Map from firm code to
 *        { seq, pinned: {kid: base64url key} | Map, removed?: {licenseId: digest},
 *          counters?: {digest: ...} }
 * @returns {{firmCode, slot, update}} slot: { firmCode, seq, vclock, lastSync, pinned,
 *          endorsements, entries, productKeys: [{license, version, key}], counters,
 *          withdrawn, manipulationWithdrawn, message }
 * @throws {DocumentInvalid} outcome 'invalid'
 * @throws {ActivationError} outcome 'other-container' or 'replay'
 */
export function applyUpdate(document, container, slots) {
  // Steps 1–2 need the firm code to find the slot; readUpdate repeats them.
  const { payload, envelope } = readEnvelope(document);
  const firmCode = required(payload, 'firm_code', T.firmCode);
  const slot = slotOf(slots, firmCode);
  const pinned = pinnedMap(slot?.pinned);
  const u = readUpdate(envelope, pinned.size ? pinned : null);

  // 14. For this container.
  if (u.serial !== container.serial) {
    throw new ActivationError('other-container', `the update is for container ${u.serial}, not ${container.serial}`);
  }
  // 15. Every entry names this container's key.
  for (const e of u.entries) {
    if (e.container.signPub !== container.signPub) throw new DocumentInvalid('an entry names another container key');
  }
  // 16. Sequence number.
  const slotSeq = slot?.seq ?? 0;
  if (!(u.seq > slotSeq)) {
    throw new ActivationError('replay', `the update has sequence number ${u.seq}; the container is at ${slotSeq}`);
  }
  // 17. New pinned keys.
  const newPinned = acceptKeys(firmCode, pinned.size ? pinned : new Map([[u.firmPub.kid, u.firmPub]]), u.endorsements);
  // 18. Drop entries this container removed itself, and their keys.
  const removed = slot?.removed ?? {};
  const dropped = new Set();
  const entries = u.entries.filter((e) => {
    const gone = Object.prototype.hasOwnProperty.call(removed, e.licenseId) && removed[e.licenseId] === e.digest;
    if (gone) dropped.add(e.digest);
    return !gone;
  });
  const keys = u.keys.filter((k) => !dropped.has(k.license));
  // 19. Unseal. Product keys in entry order, and for each entry in the order of its key_versions.
  const unsealed = keys.map((k) => ({ license: k.license, version: k.version, key: unsealProductKey(k, container.boxPrivate, u.serial) }));
  const order = new Map(entries.map((e, i) => [e.digest, i]));
  const rank = (k) => entries[order.get(k.license)].keyVersions.indexOf(k.version);
  unsealed.sort((a, b) => order.get(a.license) - order.get(b.license) || rank(a) - rank(b));
  // 20. The new slot.
  const present = new Set(entries.map((e) => e.digest));
  const idsAfter = new Set(entries.map((e) => e.licenseId));
  const held = new Map((slot?.entries ?? []).map((e) => [e.licenseId, e]));
  const counters = {};
  for (const [d, c] of Object.entries(slot?.counters ?? {})) if (present.has(d)) counters[d] = c;
  // Withdrawn: ids held before and absent now, with those withdrawn earlier, minus ids present.
  const withdrawn = new Set(slot?.withdrawn ?? []);
  for (const id of held.keys()) withdrawn.add(id);
  for (const id of idsAfter) withdrawn.delete(id);
  // Removals this container made are forgotten once the update brings the license back.
  const removedAfter = {};
  for (const [id, d] of Object.entries(removed)) if (!idsAfter.has(Number(id))) removedAfter[id] = d;
  // Manipulation notices: kept for ids still absent; added for ids the update withdraws
  // that were held before and are absent now.
  const notices = {};
  for (const [id, n] of Object.entries(slot?.notices ?? {})) if (!idsAfter.has(Number(id))) notices[id] = n;
  for (const id of u.manipulation?.withdrawn ?? []) {
    if (held.has(id) && !idsAfter.has(id)) notices[String(id)] = { product_code: held.get(id).productCode, message: u.message };
  }
  const newSlot = {
    firmCode,
    seq: u.seq,
    vclock: u.time,
    lastSync: u.time,
    pinned: Object.fromEntries([...newPinned.values()].sort((a, b) => (a.kid < b.kid ? -1 : 1)).map((k) => [k.kid, k.text])),
    endorsements: u.endorsements,
    entries,
    productKeys: unsealed,
    counters,
    removed: removedAfter,
    withdrawn: [...withdrawn].sort((a, b) => a - b),
    notices,
    message: u.message,
  };
  return { firmCode, slot: newSlot, update: publicView(u) };
}

/**
 * Apply a usage-report acknowledgement as a container does (9.2), without storing
 * anything. It is verified with the keys the slot pins plus those its stored
 * endorsements endorse, and refused for another container; it is applied only when it
 * answers the slot's newest document (`slot.chain[0]`).
 *
 * @param document  the report-ack document
 * @param {{serial: string}} container  this container
 * @param slots  as for applyUpdate; the slot may also hold `endorsements` (firm-key
 *        documents), `chain` (the digests of its last documents, newest first), `lastSync`
 *        and `counters` ({digest: {settled?, ...}})
 * @returns {{applied: boolean, firmCode, slot, ack}} `applied` false: an acknowledgement of
 *          an older document, which changes nothing (`slot` is then the slot as given)
 * @throws {DocumentInvalid} no slot for its firm, a bad signature or field, another container
 */
export function applyAck(document, container, slots) {
  const { payload, envelope } = readEnvelope(document);
  const firmCode = required(payload, 'firm_code', T.firmCode);
  const slot = slotOf(slots, firmCode);
  if (!slot) throw new DocumentInvalid(`no slot for firm ${firmCode}`);
  const keys = acceptKeys(firmCode, pinnedMap(slot.pinned), slot.endorsements ?? []);
  const ack = verifyReportAck(envelope, keys, { serial: container.serial });
  if (!slot.chain || slot.chain[0] !== ack.request) return { applied: false, firmCode, slot, ack };
  const counters = {};
  for (const [d, c] of Object.entries(slot.counters ?? {})) {
    counters[d] = Object.prototype.hasOwnProperty.call(ack.recorded, d) ? { ...c, settled: Math.max(c.settled ?? 0, ack.recorded[d]) } : c;
  }
  const newSlot = { ...slot, vclock: ack.time, lastSync: Math.max(slot.lastSync ?? 0, ack.time), counters };
  return { applied: true, firmCode, slot: newSlot, ack };
}
