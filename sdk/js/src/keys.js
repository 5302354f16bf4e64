// Raw keys, key ids (docs/formats.md 3.2) and the primitives of 8.1, on node:crypto.

import crypto from 'node:crypto';
import { decodeBase64url, encodeBase64url } from './base64url.js';

// DER prefixes that wrap 32 raw key bytes (docs/formats.md 15).
const ED25519_PUBLIC_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const X25519_PUBLIC_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const ED25519_PRIVATE_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const X25519_PRIVATE_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

export function sha256(bytes) {
  return crypto.createHash('sha256').update(bytes).digest();
}

/** Key id of a raw 32-byte Ed25519 public key: the first 16 lowercase hex digits of its SHA-256. */
export function keyId(rawPublicKey) {
  const raw = Buffer.from(rawPublicKey);
  if (raw.length !== 32) throw new TypeError('a key id is made from a 32-byte public key');
  return sha256(raw).toString('hex').slice(0, 16);
}

function toBytes(key, what) {
  if (key instanceof Uint8Array) return Buffer.from(key);
  if (typeof key === 'string') return decodeBase64url(key);
  throw new TypeError(`${what}: expected bytes or base64url text`);
}

/** A node KeyObject for a raw 32-byte Ed25519 public key. */
export function ed25519PublicKeyObject(raw) {
  const bytes = Buffer.from(raw);
  if (bytes.length !== 32) throw new TypeError('an Ed25519 public key is 32 bytes');
  return crypto.createPublicKey({ key: Buffer.concat([ED25519_PUBLIC_PREFIX, bytes]), format: 'der', type: 'spki' });
}

/** A node KeyObject for a raw 32-byte X25519 public key. */
export function x25519PublicKeyObject(raw) {
  const bytes = Buffer.from(raw);
  if (bytes.length !== 32) throw new TypeError('an X25519 public key is 32 bytes');
  return crypto.createPublicKey({ key: Buffer.concat([X25519_PUBLIC_PREFIX, bytes]), format: 'der', type: 'spki' });
}

/** A node KeyObject for a raw 32-byte X25519 private key. */
export function x25519PrivateKeyObject(raw) {
  const bytes = Buffer.from(raw);
  if (bytes.length !== 32) throw new TypeError('an X25519 private key is 32 bytes');
  return crypto.createPrivateKey({ key: Buffer.concat([X25519_PRIVATE_PREFIX, bytes]), format: 'der', type: 'pkcs8' });
}

/** A node KeyObject for a raw 32-byte Ed25519 private key (the RFC 8032 seed). */
export function ed25519PrivateKeyObject(raw) {
  const bytes = Buffer.from(raw);
  if (bytes.length !== 32) throw new TypeError('an Ed25519 private key is 32 bytes');
  return crypto.createPrivateKey({ key: Buffer.concat([ED25519_PRIVATE_PREFIX, bytes]), format: 'der', type: 'pkcs8' });
}

/** The raw 32 bytes of a public KeyObject (Ed25519 or X25519). */
export function rawPublicKey(keyObject) {
  const der = keyObject.export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(der.length - 32));
}

/** The raw X25519 public key that belongs to a raw X25519 private key. */
export function x25519PublicFromPrivate(rawPrivate) {
  return rawPublicKey(crypto.createPublicKey(x25519PrivateKeyObject(rawPrivate)));
}

/** The raw Ed25519 public key that belongs to a raw Ed25519 private key (seed). */
export function ed25519PublicFromPrivate(rawPrivate) {
  return rawPublicKey(crypto.createPublicKey(ed25519PrivateKeyObject(rawPrivate)));
}

/**
 * Pure Ed25519 verification. Returns false (never throws) for a signature that is not
 * 64 bytes or a key that cannot be used.
 */
export function ed25519Verify(rawPublic, message, signature) {
  if (!(signature instanceof Uint8Array) || signature.length !== 64) return false;
  try {
    return crypto.verify(null, message, ed25519PublicKeyObject(rawPublic), signature);
  } catch {
    return false;
  }
}

/** X25519(private, public); refuses an all-zero shared secret (8.1). */
export function x25519(rawPrivate, rawPublic) {
  let shared;
  try {
    shared = crypto.diffieHellman({
      privateKey: x25519PrivateKeyObject(rawPrivate),
      publicKey: x25519PublicKeyObject(rawPublic),
    });
  } catch {
    throw new Error('X25519 failed');
  }
  if (shared.every((b) => b === 0)) throw new Error('X25519 gave an all-zero shared secret');
  return shared;
}

/** HKDF-SHA256 with a 32-byte output. `salt` null or empty: 32 zero bytes. */
export function hkdf32(ikm, salt, info) {
  const s = salt && salt.length ? Buffer.from(salt) : Buffer.alloc(32);
  return Buffer.from(crypto.hkdfSync('sha256', Buffer.from(ikm), s, Buffer.from(info), 32));
}

/** AES-256-GCM decryption of ciphertext ‖ 16-byte tag. Throws on a bad tag. */
export function aesGcmOpen(key, nonce, sealed, aad) {
  if (sealed.length < 16) throw new Error('AES-GCM: shorter than its tag');
  const decipher = crypto.createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 });
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.subarray(sealed.length - 16));
  return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - 16)), decipher.final()]);
}

/**
 * One accepted Ed25519 public key: { kid, raw, text } where text is its base64url.
 * Accepts a PEM text holding one key, a node KeyObject, 32 raw bytes, or base64url text
 * of the 32 bytes.
 */
export function publicKeyEntry(key) {
  let raw;
  if (typeof key === 'string' && key.includes('-----BEGIN')) {
    const obj = crypto.createPublicKey(key);
    if (obj.asymmetricKeyType !== 'ed25519') throw new TypeError('not an Ed25519 public key');
    raw = rawPublicKey(obj);
  } else if (key instanceof crypto.KeyObject) {
    if (key.asymmetricKeyType !== 'ed25519' || key.type !== 'public') throw new TypeError('not an Ed25519 public key');
    raw = rawPublicKey(key);
  } else {
    raw = toBytes(key, 'public key');
    if (raw.length !== 32) throw new TypeError('an Ed25519 public key is 32 bytes');
  }
  return { kid: keyId(raw), raw, text: encodeBase64url(raw) };
}

/** Split a text that holds one or more PEM blocks (as `licentia vendor firm public-key` prints). */
export function splitPem(text) {
  return text.match(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----\s*/g) ?? [];
}

/**
 * A set of accepted keys: Map kid -> { kid, raw, text }.
 * `keys` may be a Map from keySet, one key, or an array of keys; a string may hold
 * several PEM blocks.
 */
export function keySet(keys) {
  if (keys instanceof Map) {
    const entries = [...keys.values()];
    if (entries.every((e) => e && typeof e.kid === 'string' && e.raw instanceof Uint8Array)) return keys;
    return keySet(entries);
  }
  const list = [];
  const add = (k) => {
    if (typeof k === 'string' && k.includes('-----BEGIN')) {
      const blocks = splitPem(k);
      if (!blocks.length) throw new TypeError('no PEM public key in the text');
      blocks.forEach((b) => list.push(publicKeyEntry(b)));
    } else {
      list.push(publicKeyEntry(k));
    }
  };
  if (Array.isArray(keys)) keys.forEach(add);
  else if (keys !== undefined && keys !== null) add(keys);
  return new Map(list.map((e) => [e.kid, e]));
}
