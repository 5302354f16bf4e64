// Base64url without padding, one spelling per byte string (docs/formats.md 1.3).

import { DocumentMalformed } from './errors.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const VALUE = new Map([...ALPHABET].map((c, i) => [c, i]));

/**
 * Decode canonical base64url. Refuses padding, '+', '/', white space, any character
 * outside the alphabet, a length of 1 mod 4, and unused trailing bits that are not zero.
 * @param {string} text
 * @returns {Buffer}
 * @throws {DocumentMalformed}
 */
export function decodeBase64url(text) {
  if (typeof text !== 'string') throw new DocumentMalformed('base64url: not a string');
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new DocumentMalformed('base64url: character outside the alphabet');
  const rest = text.length % 4;
  if (rest === 1) throw new DocumentMalformed('base64url: impossible length');
  if (rest === 2 && VALUE.get(text[text.length - 1]) % 16 !== 0) {
    throw new DocumentMalformed('base64url: unused bits are not zero');
  }
  if (rest === 3 && VALUE.get(text[text.length - 1]) % 4 !== 0) {
    throw new DocumentMalformed('base64url: unused bits are not zero');
  }
  return Buffer.from(text, 'base64url');
}

/** Encode bytes as base64url without padding. */
export function encodeBase64url(bytes) {
  return Buffer.from(bytes).toString('base64url');
}
