// Sealed boxes and product keys (docs/formats.md section 8).

import { DocumentInvalid, DocumentMalformed } from './errors.js';
import { decodeBase64url } from './base64url.js';
import { x25519, x25519PublicFromPrivate, ed25519PublicFromPrivate, hkdf32, aesGcmOpen } from './keys.js';
import { isPlainObject } from './envelope.js';

const SEAL_INFO_PREFIX = 'licentia seal v1|';

function bytesOf(value, what) {
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (typeof value === 'string') {
    if (/^[0-9a-f]+$/.test(value) && (value.length === 64 || value.length === 128)) return Buffer.from(value, 'hex');
    return decodeBase64url(value);
  }
  throw new TypeError(`${what}: expected bytes, hex or base64url`);
}

/**
 * The X25519 private key from what a caller holds: 32 raw bytes, or the container's
 * 64-byte secret (8.4: Ed25519 seed ‖ X25519 private key), as bytes, hex or base64url.
 */
export function x25519PrivateFrom(secretOrKey) {
  const bytes = bytesOf(secretOrKey, 'private key');
  if (bytes.length === 32) return bytes;
  if (bytes.length === 64) return bytes.subarray(32);
  throw new TypeError('expected a 32-byte X25519 private key or a 64-byte container secret');
}

/** The public keys of a 64-byte container secret (8.4): { signPub, boxPub } as raw bytes. */
export function containerPublicKeys(secret) {
  const bytes = bytesOf(secret, 'container secret');
  if (bytes.length !== 64) throw new TypeError('a container secret is 64 bytes');
  return { signPub: ed25519PublicFromPrivate(bytes.subarray(0, 32)), boxPub: x25519PublicFromPrivate(bytes.subarray(32)) };
}

/**
 * Open a sealed box (8.2).
 * @param recipientPrivate  32-byte X25519 private key (or a 64-byte container secret)
 * @param {Uint8Array} blob  eph_pub (32) ‖ nonce (12) ‖ ciphertext ‖ tag (16)
 * @param {string|Uint8Array} context
 * @param {{steps?: boolean}} [options]  steps: also return the intermediate values
 * @returns {Buffer | {plaintext, steps}}
 * @throws {DocumentInvalid} when the box does not open
 */
export function openSealedBox(recipientPrivate, blob, context, { steps = false } = {}) {
  const priv = x25519PrivateFrom(recipientPrivate);
  const bytes = Buffer.from(blob);
  if (bytes.length < 60) throw new DocumentInvalid('sealed box: too short');
  const ctx = Buffer.from(context);
  const ephPub = bytes.subarray(0, 32);
  const nonce = bytes.subarray(32, 44);
  const rest = bytes.subarray(44);
  let shared;
  try {
    shared = x25519(priv, ephPub);
  } catch (e) {
    throw new DocumentInvalid(`sealed box: ${e.message}`);
  }
  const ownPub = x25519PublicFromPrivate(priv);
  const salt = Buffer.concat([ephPub, ownPub]);
  const info = Buffer.concat([Buffer.from(SEAL_INFO_PREFIX, 'utf8'), ctx]);
  const key = hkdf32(shared, salt, info);
  let plaintext;
  try {
    plaintext = aesGcmOpen(key, nonce, rest, ctx);
  } catch {
    throw new DocumentInvalid('sealed box: does not open');
  }
  if (!steps) return plaintext;
  return {
    plaintext,
    steps: { ephemeralPublic: Buffer.from(ephPub), sharedSecret: shared, hkdfSalt: salt, hkdfInfo: info, aesKey: key, nonce: Buffer.from(nonce), aad: ctx },
  };
}

function decimal(n, name) {
  if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`${name} must be a non-negative integer`);
  return String(n);
}

/** The context of a product key sealed to a container (8.2). */
export function productKeyContext(serial, entryDigest, version) {
  return `licentia product key|${serial}|${entryDigest}|${decimal(version, 'version')}`;
}

/** The context of a product key sealed to a client session (8.2, 12.6). */
export function leaseKeyContext(serverSerial, entryDigest, version, session) {
  return `licentia lease key|${serverSerial}|${entryDigest}|${decimal(version, 'version')}|${session}`;
}

function readRecord(record, withLicense) {
  if (!isPlainObject(record)) throw new DocumentInvalid('a sealed key is a JSON object');
  const { version, sealed } = record;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) {
    throw new DocumentInvalid('sealed key: version is not an integer >= 1');
  }
  if (typeof sealed !== 'string') throw new DocumentInvalid('sealed key: sealed is not a string');
  let blob;
  try {
    blob = decodeBase64url(sealed);
  } catch (e) {
    if (e instanceof DocumentMalformed) throw new DocumentInvalid(`sealed key: ${e.reason}`);
    throw e;
  }
  if (withLicense && typeof record.license !== 'string') throw new DocumentInvalid('sealed key: license is not a string');
  return { license: record.license, version, blob };
}

/**
 * Unseal a product key sealed to a container (in an update or a borrow answer).
 * @param record  {license, version, sealed} as in the document
 * @param containerSecretOrKey  the container's X25519 private key (32 bytes) or its 64-byte secret
 * @param {string} serial  the serial of the container the key is sealed to
 * @returns {Buffer} the 32-byte product key
 * @throws {DocumentInvalid}
 */
export function unsealProductKey(record, containerSecretOrKey, serial) {
  const { license, version, blob } = readRecord(record, true);
  const key = openSealedBox(containerSecretOrKey, blob, Buffer.from(productKeyContext(serial, license, version), 'utf8'));
  if (key.length !== 32) throw new DocumentInvalid('sealed key: not 32 bytes');
  return key;
}

/**
 * Unseal a product key sealed to a client session (a lease answer, 12.6).
 * @param record  {version, sealed}
 * @param sessionPrivate  the session's X25519 private key
 * @param {string} serverSerial  the serving container's serial
 * @param {string} entryDigest   the digest of the served entry
 * @param {string} session       the session key exactly as its base64url text was sent
 */
export function unsealLeaseKey(record, sessionPrivate, serverSerial, entryDigest, session) {
  const { version, blob } = readRecord(record, false);
  const key = openSealedBox(sessionPrivate, blob, Buffer.from(leaseKeyContext(serverSerial, entryDigest, version, session), 'utf8'));
  if (key.length !== 32) throw new DocumentInvalid('sealed key: not 32 bytes');
  return key;
}

/** The HKDF info of a product key (8.3). */
export function productKeyInfo(firmCode, productCode, version) {
  return `licentia product key|${decimal(firmCode, 'firm code')}|${decimal(productCode, 'product code')}|${decimal(version, 'version')}`;
}

/** Derive a product key from a firm secret (8.3), as License Central does. */
export function deriveProductKey(firmSecret, firmCode, productCode, version) {
  return hkdf32(Buffer.from(firmSecret), null, Buffer.from(productKeyInfo(firmCode, productCode, version), 'utf8'));
}
