// Reading a payload's fields by a field table (docs/formats.md 3.6).

import { DocumentInvalid, DocumentMalformed } from './errors.js';
import { decodeBase64url } from './base64url.js';
import { isPlainObject } from './envelope.js';
import { isSerial, isCanonicalTicketId, isFirmCode, isProductCode, isFeature } from './codes.js';

const has = (obj, name) => Object.prototype.hasOwnProperty.call(obj, name);

// Type checks. Each returns the value to keep, or throws a DocumentInvalid.
export const T = {
  int: (min = -Number.MAX_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER) => (v, name) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new DocumentInvalid(`${name}: not an integer`);
    if (v < min || v > max) throw new DocumentInvalid(`${name}: out of range`);
    return Object.is(v, -0) ? 0 : v;
  },
  string: (v, name) => {
    if (typeof v !== 'string') throw new DocumentInvalid(`${name}: not a string`);
    return v;
  },
  stringOfLength: (min, max) => (v, name) => {
    if (typeof v !== 'string') throw new DocumentInvalid(`${name}: not a string`);
    const n = [...v].length;
    if (n < min || n > max) throw new DocumentInvalid(`${name}: length out of range`);
    return v;
  },
  oneOf: (...choices) => (v, name) => {
    if (typeof v !== 'string' || !choices.includes(v)) throw new DocumentInvalid(`${name}: not one of ${choices.join(', ')}`);
    return v;
  },
  bool: (v, name) => {
    if (v !== true && v !== false) throw new DocumentInvalid(`${name}: not true or false`);
    return v;
  },
  object: (v, name) => {
    if (!isPlainObject(v)) throw new DocumentInvalid(`${name}: not an object`);
    return v;
  },
  array: (v, name) => {
    if (!Array.isArray(v)) throw new DocumentInvalid(`${name}: not an array`);
    return v;
  },
  digest: (v, name) => {
    if (typeof v !== 'string' || !/^[0-9a-f]{64}$/.test(v)) throw new DocumentInvalid(`${name}: not a digest`);
    return v;
  },
  // b64(n): canonical base64url of exactly n bytes; b64(): any length. Returns the bytes.
  b64: (n) => (v, name) => {
    let bytes;
    try {
      bytes = decodeBase64url(v);
    } catch (e) {
      if (e instanceof DocumentMalformed) throw new DocumentInvalid(`${name}: ${e.reason}`);
      throw e;
    }
    if (n !== undefined && bytes.length !== n) throw new DocumentInvalid(`${name}: not ${n} bytes`);
    return bytes;
  },
  serial: (v, name) => {
    if (!isSerial(v)) throw new DocumentInvalid(`${name}: not a container serial`);
    return v;
  },
  ticket: (v, name) => {
    if (!isCanonicalTicketId(v)) throw new DocumentInvalid(`${name}: not a ticket id in canonical form`);
    return v;
  },
  firmCode: (v, name) => {
    if (!isFirmCode(v)) throw new DocumentInvalid(`${name}: not a firm code`);
    return v;
  },
  productCode: (v, name) => {
    if (!isProductCode(v)) throw new DocumentInvalid(`${name}: not a product code`);
    return v;
  },
  feature: (v, name) => {
    if (!isFeature(v)) throw new DocumentInvalid(`${name}: not a feature code`);
    return v;
  },
  arrayOf: (check) => (v, name) => {
    if (!Array.isArray(v)) throw new DocumentInvalid(`${name}: not an array`);
    return v.map((e, i) => check(e, `${name}[${i}]`));
  },
  // An array check whose elements (numbers or strings) must each appear once.
  distinct: (check) => (v, name) => {
    const out = check(v, name);
    if (new Set(out).size !== out.length) throw new DocumentInvalid(`${name}: an element appears twice`);
    return out;
  },
};

// A time (docs/formats.md 3.6): whole Unix seconds, 0 or more.
T.time = T.int(0);

/** required: present and not null. */
export function required(obj, name, check, path = name) {
  if (!has(obj, name) || obj[name] === null) throw new DocumentInvalid(`${path}: missing`);
  return check(obj[name], path);
}

/** optional: absent or null mean the default. */
export function optional(obj, name, check, dflt = null, path = name) {
  if (!has(obj, name) || obj[name] === null) return dflt;
  return check(obj[name], path);
}

/** absent-only: absent means the default; null is refused. */
export function absentOnly(obj, name, check, dflt, path = name) {
  if (!has(obj, name)) return dflt;
  if (obj[name] === null) throw new DocumentInvalid(`${path}: null is refused`);
  return check(obj[name], path);
}

export { has };
