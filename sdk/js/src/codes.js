// Ticket ids, container serials, item ids and codes (docs/formats.md section 2).

import { InvalidCode } from './errors.js';

export const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const VALUE = new Map([...ALPHABET].map((c, i) => [c, i]));

const MAX_UINT32 = 4294967295;

// Multiplication by x in GF(32) modulo x^5 + x^2 + 1.
function timesX(a) {
  a <<= 1;
  if (a & 0b100000) a ^= 0b100101;
  return a;
}

/** The check character of 24 data characters (2.2). */
export function checkCharacter(data) {
  if (typeof data !== 'string' || data.length !== 24) throw new InvalidCode('24 data characters are needed');
  let interim = 0;
  for (const ch of data) {
    const v = VALUE.get(ch);
    if (v === undefined) throw new InvalidCode(`character ${JSON.stringify(ch)} is not allowed`);
    interim = timesX(interim) ^ v;
  }
  return ALPHABET[timesX(interim)];
}

/**
 * Read a ticket id as a person typed it (2.2) and return its canonical form
 * (upper case, five groups of five joined by '-').
 * @throws {InvalidCode}
 */
export function normalizeTicketId(text) {
  if (typeof text !== 'string') throw new InvalidCode('a ticket id is text');
  // 1. ASCII only, checked before any case folding.
  if (!/^[\x00-\x7f]*$/.test(text)) throw new InvalidCode('a ticket id holds ASCII characters only');
  let s = text.replace(/[a-z]/g, (c) => c.toUpperCase());
  // 2. Drop '-', space and tab anywhere.
  s = s.replace(/[- \t]/g, '');
  // 3. Look-alike folding.
  s = s.replace(/O/g, '0').replace(/[IL]/g, '1');
  // 4. Alphabet.
  for (const ch of s) {
    if (!VALUE.has(ch)) throw new InvalidCode(`character ${JSON.stringify(ch)} is not allowed`);
  }
  // 5. Length.
  if (s.length !== 25) throw new InvalidCode(`a ticket id has 25 characters, not ${s.length}`);
  // 6. Check character.
  if (checkCharacter(s.slice(0, 24)) !== s[24]) throw new InvalidCode('the ticket id is mistyped (check character)');
  // 7. Canonical form.
  return s.match(/.{5}/g).join('-');
}

/** True when a text reads as a ticket id (2.2). */
export function checkTicketId(text) {
  try {
    normalizeTicketId(text);
    return true;
  } catch (e) {
    if (e instanceof InvalidCode) return false;
    throw e;
  }
}

/** True when a text is a ticket id in its canonical form, the only form a document holds. */
export function isCanonicalTicketId(text) {
  try {
    return normalizeTicketId(text) === text;
  } catch (e) {
    if (e instanceof InvalidCode) return false;
    throw e;
  }
}

const SERIAL = /^1[0-9][0-9](-[0-9A-HJKMNP-TV-Z]{4}){3}$/;

/** True when a value is a container serial (2.3): no folding, no white space. */
export function isSerial(value) {
  return typeof value === 'string' && SERIAL.test(value);
}

/** Throws InvalidCode unless the value is a container serial (2.3). */
export function checkSerial(value) {
  if (!isSerial(value)) throw new InvalidCode('not a container serial');
  return value;
}

const ITEM_ID = /^[A-Z]-[0-9]{5,10}-[0-9]{1,10}$/;

/** True when a value is an item id (2.5), checked as it is (case-sensitive). */
export function isItemId(value) {
  return typeof value === 'string' && ITEM_ID.test(value);
}

/** Throws InvalidCode unless the value is an item id (2.5). */
export function checkItemId(value) {
  if (!isItemId(value)) throw new InvalidCode('not an item id');
  return value;
}

/**
 * Read an item id as License Central reads a given one (2.5): refuse non-ASCII text,
 * strip white space at both ends, upper-case, then check.
 */
export function normalizeItemId(text) {
  if (typeof text !== 'string') throw new InvalidCode('an item id is text');
  if (!/^[\x00-\x7f]*$/.test(text)) throw new InvalidCode('an item id holds ASCII characters only');
  return checkItemId(text.replace(/^[ \t\n\r\f\v]+|[ \t\n\r\f\v]+$/g, '').toUpperCase());
}

function isIntegerIn(value, min, max) {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max;
}

/** True for a firm code: an integer 1 … 4294967295 (never true/false, never a float). */
export function isFirmCode(value) {
  return isIntegerIn(value, 1, MAX_UINT32);
}

/** True for a product code: an integer 0 … 4294967295. */
export function isProductCode(value) {
  return isIntegerIn(value, 0, MAX_UINT32);
}

/** True for a feature code or feature map: an integer 0 … 4294967295. */
export function isFeature(value) {
  return isIntegerIn(value, 0, MAX_UINT32);
}

export function checkFirmCode(value) {
  if (!isFirmCode(value)) throw new InvalidCode('not a firm code (1 to 4294967295)');
  return value;
}

export function checkProductCode(value) {
  if (!isProductCode(value)) throw new InvalidCode('not a product code (0 to 4294967295)');
  return value;
}

export function checkFeature(value) {
  if (!isFeature(value)) throw new InvalidCode('not a feature code (0 to 4294967295)');
  return value;
}
