// The package's own behaviour beyond the vectors, with documents signed here by keys
// made for the test; and the README's example, run as written.

import test from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { assertRefused } from './helpers.js';
import {
  verifyLicense,
  verifyUpdate,
  findLicense,
  evaluate,
  keyId,
  keySet,
  signingInput,
  encodeBase64url,
  digest,
  canonicalString,
  DocumentInvalid,
  DocumentMalformed,
  LicenseExpired,
  LicenseNotFound,
  FeatureNotLicensed,
  JsonFloat,
} from '../src/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));

function newKey() {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
  const der = publicKey.export({ format: 'der', type: 'spki' });
  const raw = der.subarray(der.length - 32);
  return { privateKey, raw, pem: publicKey.export({ format: 'pem', type: 'spki' }), kid: keyId(raw) };
}

function sign(key, type, payload) {
  const body = { ...payload, type, v: 1 };
  const sig = crypto.sign(null, signingInput(type, body), key.privateKey);
  return { payload: body, kid: key.kid, sig: encodeBase64url(sig) };
}

const firm = newKey();
const containerKey = newKey();
const SERIAL = '130-7K2M-QX4V-9TBA';

function licensePayload(overrides = {}) {
  const { options, ...rest } = overrides;
  return {
    firm_code: 10101,
    product_code: 1,
    feature_map: 15,
    text: 'Test product',
    license_id: 7,
    container: { serial: SERIAL, sign_pub: encodeBase64url(containerKey.raw) },
    options: { expires: 2000000000, quantity: 1, ...options },
    issued: 1700000000,
    key_versions: [],
    ...rest,
  };
}

function updateText(entries, time = 1800000000) {
  const doc = sign(firm, 'update', {
    firm_code: 10101,
    firm_pub: encodeBase64url(firm.raw),
    serial: SERIAL,
    seq: 1,
    time,
    entries,
    keys: [],
    endorsements: [],
    request: null,
    message: null,
    manipulation: null,
  });
  return JSON.stringify(doc, null, 2);
}

test('a license verifies from text, bytes, a parsed value, with PEM, raw and base64url keys', () => {
  const doc = sign(firm, 'license', licensePayload());
  const text = JSON.stringify(doc);
  const d = verifyLicense(text, firm.pem).digest;
  assert.equal(verifyLicense(Buffer.from(text), firm.raw).digest, d);
  assert.equal(verifyLicense(JSON.parse(text), encodeBase64url(firm.raw)).digest, d);
  assert.equal(verifyLicense(doc, [newKey().pem, firm.pem]).digest, d);
  assert.equal(digest(text), d);
  // Several PEM blocks in one text select by key id.
  assert.equal(keySet(newKey().pem + firm.pem).size, 2);
  assert.equal(verifyLicense(doc, newKey().pem + firm.pem).digest, d);
  assertRefused(() => verifyLicense(doc, newKey().pem), DocumentInvalid, 'invalid');
});

test('values given as objects are still checked for numbers and strings', () => {
  const withFloat = sign(firm, 'license', licensePayload({ weight: 1.5 }));
  assertRefused(() => verifyLicense(withFloat, firm.pem), DocumentInvalid);
  const jsonFloat = sign(firm, 'license', licensePayload());
  jsonFloat.payload.issued = new JsonFloat(1700000000);
  assertRefused(() => verifyLicense(jsonFloat, firm.pem), DocumentInvalid);
  const big = sign(firm, 'license', licensePayload({ issued: 2 ** 53 }));
  assertRefused(() => verifyLicense(big, firm.pem), DocumentInvalid);
  const lone = sign(firm, 'license', licensePayload());
  lone.payload.text = 'a\ud800';
  assertRefused(() => verifyLicense(lone, firm.pem), DocumentInvalid);
  assertRefused(() => verifyLicense('{"payload": 1e400}', firm.pem), DocumentMalformed);
});

test('non-ASCII text and integer-like keys: signed and verified in code-point order', () => {
  const payload = licensePayload({ text: 'Grüße 製品 😀 \ue000', note: { 9: 'a', 10101: 'b', é: 'c', '😀': 'd', '\ue000': 'e' } });
  const doc = sign(firm, 'license', payload);
  const lic = verifyLicense(JSON.stringify(doc), firm.pem);
  assert.equal(lic.text, payload.text);
  assert.equal(canonicalString(payload.note), '{"10101":"b","9":"a","é":"c","\ue000":"e","😀":"d"}');
});

test('a payload member named __proto__ is an ordinary unknown field', () => {
  const payload = licensePayload();
  const doc = sign(firm, 'license', payload);
  const text = JSON.stringify(doc).replace('"firm_code"', '"__proto__":{"x":1},"firm_code"');
  // The signature covers the member, so this text does not verify; signed with it, it does.
  assertRefused(() => verifyLicense(text, firm.pem), DocumentInvalid, 'invalid');
  const withProto = JSON.parse(text);
  const resigned = crypto.sign(null, signingInput('license', withProto.payload), firm.privateKey);
  withProto.sig = encodeBase64url(resigned);
  const lic = verifyLicense(JSON.stringify(withProto), firm.pem);
  assert.equal(lic.firmCode, 10101);
});

test('times near 2^53 are compared exactly', () => {
  // first use + usage period = 2^53 + 1, which a double rounds to 2^53.
  const lic = verifyLicense(
    sign(firm, 'license', licensePayload({ first_use: 2 ** 53 - 3, options: { expires: null, usage_period: 4 } })),
    firm.pem,
  );
  const r = evaluate(lic, {}, { firmCode: 10101, productCode: 1 }, 2 ** 53);
  assert.equal(r.expires, 2n ** 53n + 1n);
  assertRefused(() => evaluate(lic, {}, { firmCode: 10101, productCode: 1 }, 2 ** 53 + 2), LicenseExpired);
});

test('findLicense: candidates of the product only, the refusal closest to success', () => {
  const expired = verifyLicense(sign(firm, 'license', licensePayload({ license_id: 1, options: { expires: 1750000000 } })), firm.pem);
  const featureless = verifyLicense(sign(firm, 'license', licensePayload({ license_id: 2, feature_map: 0 })), firm.pem);
  const other = verifyLicense(sign(firm, 'license', licensePayload({ license_id: 3, product_code: 2 })), firm.pem);
  const request = { firmCode: 10101, productCode: 1, featureCode: 1 };
  assertRefused(() => findLicense([featureless, expired, other], request, 1800000000), LicenseExpired);
  assertRefused(() => findLicense([featureless], request, 1800000000), FeatureNotLicensed);
  assertRefused(() => findLicense([other], request, 1800000000), LicenseNotFound);
  assert.equal(findLicense([expired, other], { ...request, productCode: 2 }, 1800000000).license.licenseId, 3);
});

test('the README example runs as written', async () => {
  const readme = fs.readFileSync(path.join(here, '..', 'README.md'), 'utf8');
  const m = /```js\n(\/\/ check-license\.mjs\n[\s\S]*?)```/.exec(readme);
  assert.ok(m, 'the example is in the README');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'licentia-verify-'));
  try {
    const source = m[1]
      .replace("from '@licentia/verify'", `from ${JSON.stringify(pathToFileURL(path.join(here, '..', 'src', 'index.js')).href)}`)
      .replace(/const FIRM_10101_KEYS = `[\s\S]*?`;/, `const FIRM_10101_KEYS = ${JSON.stringify(firm.pem)};`)
      .replace(/const answer = [\s\S]*$/, '');
    const script = path.join(dir, 'check-license.mjs');
    fs.writeFileSync(script, source);
    const { checkLicense } = await import(pathToFileURL(script).href);

    const now = Math.floor(Date.now() / 1000);
    const good = sign(firm, 'license', licensePayload({ options: { expires: now + 86400, data: 'AQID' } }));
    const gone = sign(firm, 'license', licensePayload({ license_id: 8, options: { expires: now - 1 } }));
    const file = path.join(dir, 'update.json');

    fs.writeFileSync(file, updateText([gone, good], now - 60));
    const ok = checkLicense(file);
    assert.equal(ok.ok, true);
    assert.equal(ok.licenseId, 7);
    assert.deepEqual([...ok.data], [1, 2, 3]);

    fs.writeFileSync(file, updateText([gone], now - 60));
    assert.deepEqual({ ...checkLicense(file), message: undefined }, { ok: false, code: 12, error: 'LicenseExpired', message: undefined });

    assert.equal(checkLicense(file, { productCode: 9 }).error, 'LicenseNotFound');

    fs.writeFileSync(file, updateText([good], now - 60).replace('"seq": 1', '"seq": 2'));
    assert.deepEqual({ ...checkLicense(file), reason: undefined }, { ok: false, code: 11, error: 'LicenseInvalid', reason: undefined });

    // verifyUpdate refuses an update signed by a key the application does not pin.
    assertRefused(() => verifyUpdate(updateText([good]), newKey().pem), DocumentInvalid, 'invalid');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
