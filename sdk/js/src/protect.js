// Protected data files (docs/formats.md 11.4).

import { ProtectedDataError, LicentiaError } from './errors.js';
import { parseStrict } from './json.js';
import { decodeBase64url } from './base64url.js';
import { hkdf32, aesGcmOpen } from './keys.js';
import { isPlainObject } from './envelope.js';
import { isFirmCode, isProductCode, isFeature } from './codes.js';

export const DATA_MAGIC = Buffer.from('894c50440d0a1a0a', 'hex');
const OVERHEAD = 28; // nonce (12) + tag (16)

/** The per-file key: HKDF(ikm = product key, salt = the header's salt, info = "licentia data v1"). */
export function dataFileKey(productKey, salt) {
  return hkdf32(Buffer.from(productKey), Buffer.from(salt), Buffer.from('licentia data v1', 'utf8'));
}

const isInt = (v, min, max) => typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;

/** Read the header of a protected data file (11.4) without decrypting. */
export function readDataHeader(file) {
  const bytes = Buffer.from(file);
  if (bytes.length < 10 || !bytes.subarray(0, 8).equals(DATA_MAGIC)) throw new ProtectedDataError('not a protected data file (magic)');
  const length = bytes.readUInt16BE(8);
  if (bytes.length < 10 + length) throw new ProtectedDataError('truncated header');
  const headerBytes = bytes.subarray(0, 10 + length);
  let h;
  try {
    h = parseStrict(bytes.subarray(10, 10 + length));
  } catch (e) {
    if (e instanceof LicentiaError) throw new ProtectedDataError(`header: ${e.reason}`);
    throw e;
  }
  if (!isPlainObject(h)) throw new ProtectedDataError('header: not an object');
  if (h.format !== 1) throw new ProtectedDataError('header: format is not 1');
  if (h.kind !== 'data') throw new ProtectedDataError('header: kind is not "data"');
  if (!isFirmCode(h.firm)) throw new ProtectedDataError('header: firm');
  if (!isProductCode(h.product)) throw new ProtectedDataError('header: product');
  if (!isFeature(h.feature)) throw new ProtectedDataError('header: feature');
  if (!isInt(h.key_version, 1, 4294967295)) throw new ProtectedDataError('header: key_version');
  if (!isInt(h.chunk, 1, 67108864)) throw new ProtectedDataError('header: chunk');
  let salt;
  try {
    salt = decodeBase64url(h.salt);
  } catch {
    throw new ProtectedDataError('header: salt');
  }
  if (salt.length !== 16) throw new ProtectedDataError('header: salt is not 16 bytes');
  return {
    header: { firm: h.firm, product: h.product, feature: h.feature, keyVersion: h.key_version, chunk: h.chunk, salt, json: h },
    headerBytes,
    body: bytes.subarray(10 + length),
  };
}

/**
 * Open a protected data file (11.4) with its product key.
 * @returns {{header, plaintext: Buffer, chunks: number}}
 * @throws {ProtectedDataError} naming the chunk that fails
 */
export function openProtectedData(file, productKey) {
  const { header, headerBytes, body } = readDataHeader(file);
  const key = dataFileKey(productKey, header.salt);
  const size = header.chunk + OVERHEAD;
  const n = Math.ceil(body.length / size);
  if (n === 0) throw new ProtectedDataError('truncated file: no chunk');
  const lastLength = body.length - (n - 1) * size;
  if (lastLength < OVERHEAD) throw new ProtectedDataError('truncated file: the last chunk is too short');
  const parts = [];
  for (let i = 0; i < n; i++) {
    const chunk = body.subarray(i * size, Math.min((i + 1) * size, body.length));
    const index = Buffer.alloc(9);
    index.writeBigUInt64BE(BigInt(i), 0);
    index[8] = i === n - 1 ? 1 : 0;
    try {
      parts.push(aesGcmOpen(key, chunk.subarray(0, 12), chunk.subarray(12), Buffer.concat([headerBytes, index])));
    } catch {
      throw new ProtectedDataError(`chunk ${i} does not authenticate`);
    }
  }
  return { header, plaintext: Buffer.concat(parts), chunks: n };
}
