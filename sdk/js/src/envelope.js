// Signed documents: envelope (docs/formats.md 3.1), signature (3.3), verification
// (3.4) and digest (3.5).

import { DocumentInvalid } from './errors.js';
import { parseStrict, canonicalize, JsonFloat, isWellFormed, MAX_DEPTH } from './json.js';
import { decodeBase64url } from './base64url.js';
import { sha256, ed25519Verify, keySet } from './keys.js';

export const MAX_DOCUMENT_BYTES = 4 * 1024 * 1024;
const SAFE = Number.MAX_SAFE_INTEGER; // 2^53 - 1

export function isPlainObject(v) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

// A value handed over as an object (not as text) must still be a JSON value.
function checkJsonValue(value, depth) {
  if (value === null || value === true || value === false) return;
  switch (typeof value) {
    case 'string':
      if (!isWellFormed(value)) throw new DocumentInvalid('a string holds a lone surrogate');
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new DocumentInvalid('a number is not finite');
      return;
    case 'bigint':
      return;
    default:
  }
  if (value instanceof JsonFloat) return;
  if (Array.isArray(value) || isPlainObject(value)) {
    if (depth + 1 > MAX_DEPTH) throw new DocumentInvalid(`nesting deeper than ${MAX_DEPTH} levels`);
    for (const k of Object.keys(value)) {
      if (!Array.isArray(value) && !isWellFormed(k)) throw new DocumentInvalid('a key holds a lone surrogate');
      checkJsonValue(value[k], depth + 1);
    }
    if (Array.isArray(value) && Object.keys(value).length !== value.length) {
      throw new DocumentInvalid('an array with holes is no JSON value');
    }
    return;
  }
  throw new DocumentInvalid(`a ${typeof value} is no JSON value`);
}

// 3.1 item 6: whole numbers within ±(2^53 − 1) and no floats, at any depth.
function checkPayloadNumbers(value) {
  if (value instanceof JsonFloat) throw new DocumentInvalid('the payload holds a float');
  if (typeof value === 'bigint') throw new DocumentInvalid('the payload holds an integer beyond 2^53 - 1');
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new DocumentInvalid('the payload holds a float');
    if (value > SAFE || value < -SAFE) throw new DocumentInvalid('the payload holds an integer beyond 2^53 - 1');
    return;
  }
  if (Array.isArray(value)) value.forEach(checkPayloadNumbers);
  else if (isPlainObject(value)) Object.keys(value).forEach((k) => checkPayloadNumbers(value[k]));
}

/**
 * Read a signed document's envelope (3.1) from JSON text, bytes, or a value already
 * read. Text and bytes are measured (4 MiB) and read strictly (1.1) first.
 * @returns {{payload: object, kid: string, sig: string, envelope: object}}
 * @throws {DocumentInvalid} (DocumentMalformed for text the strict reader refuses)
 */
export function readEnvelope(input) {
  let value;
  if (typeof input === 'string' || input instanceof Uint8Array) {
    const size = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.length;
    if (size > MAX_DOCUMENT_BYTES) throw new DocumentInvalid('the document is longer than 4 MiB');
    value = parseStrict(input);
  } else {
    checkJsonValue(input, 0);
    value = input;
  }
  if (!isPlainObject(value)) throw new DocumentInvalid('a signed document is a JSON object');
  const members = Object.keys(value).sort();
  if (members.length !== 3 || members[0] !== 'kid' || members[1] !== 'payload' || members[2] !== 'sig') {
    throw new DocumentInvalid('the envelope has exactly the members payload, kid and sig');
  }
  const { payload, kid, sig } = value;
  if (!isPlainObject(payload)) throw new DocumentInvalid('payload is not an object');
  if (typeof kid !== 'string') throw new DocumentInvalid('kid is not a string');
  if (typeof sig !== 'string') throw new DocumentInvalid('sig is not a string');
  if (payload.v !== 1 || typeof payload.v !== 'number') throw new DocumentInvalid('payload.v is not the integer 1');
  checkPayloadNumbers(payload);
  return { payload, kid, sig, envelope: value };
}

/** The bytes a signature covers (3.3): "licentia/" ‖ type ‖ LF ‖ canonical(payload). */
export function signingInput(type, payload) {
  return Buffer.concat([Buffer.from(`licentia/${type}\n`, 'utf8'), canonicalize(payload)]);
}

/** Digest of a signed document (3.5): lowercase hex SHA-256 of the canonical envelope. */
export function digest(document) {
  const { payload, kid, sig } = readEnvelope(document);
  return sha256(canonicalize({ kid, payload, sig })).toString('hex');
}

/**
 * Verify a signed document (3.4 steps 1–5) as the type the caller expects, with a set
 * of accepted keys. Reading the payload's fields (step 6) is left to the caller.
 * @param document  JSON text, bytes, or the envelope as a value
 * @param {string} type  the expected document type
 * @param keys  accepted keys (see keySet)
 * @returns {{payload, kid, sig, digest, signer}}
 */
export function verifyEnvelope(document, type, keys) {
  const { payload, kid, sig } = readEnvelope(document);
  if (payload.type !== type) throw new DocumentInvalid(`the document is not of type ${type}`);
  const key = keySet(keys).get(kid);
  if (!key) throw new DocumentInvalid('no accepted key has the key id of the document');
  const signature = decodeBase64url(sig);
  if (!ed25519Verify(key.raw, signingInput(type, payload), signature)) {
    throw new DocumentInvalid('the signature does not verify');
  }
  return {
    payload,
    kid,
    sig,
    digest: sha256(canonicalize({ kid, payload, sig })).toString('hex'),
    signer: key,
  };
}
