import assert from 'node:assert/strict';
import { runVectorFile, assertRefused, unknownCase, documentText } from './helpers.js';
import {
  verifyLicense,
  verifyProductKeyDocument,
  verifyEndorsement,
  acceptKeys,
  signingInput,
  digest,
  DocumentInvalid,
} from '../src/index.js';

function want(w) {
  const out = {};
  if (w.firm_code !== undefined) out.firmCode = w.firm_code;
  if (w.product_code !== undefined) out.productCode = w.product_code;
  if (w.version !== undefined) out.version = w.version;
  return out;
}

runVectorFile('licenses.json', (c, data) => {
  const keys = data.keys;
  // A document given in parts (the size cases) is read as the text it makes.
  const document = c.document_text !== undefined ? documentText(c) : c.document;
  switch (c.type) {
    case 'license':
      if (c.expect === 'ok') {
        const lic = verifyLicense(document, keys);
        assert.equal(lic.digest, c.digest);
        assert.equal(digest(document), c.digest);
        if (c.fields) {
          for (const [k, v] of Object.entries(c.fields)) {
            const got = { license_id: lic.licenseId, text: lic.text, serial: lic.container.serial }[k];
            assert.equal(got, v, `field ${k}`);
          }
        }
        if (c.signing_input !== undefined) {
          assert.equal(signingInput('license', lic.payload).toString('utf8'), c.signing_input);
        }
      } else if (c.expect === 'invalid') {
        assertRefused(() => verifyLicense(document, keys), DocumentInvalid);
      } else {
        unknownCase(c, `expect ${c.expect}`);
      }
      return undefined;
    case 'product-key':
      if (c.expect === 'ok') {
        const pk = verifyProductKeyDocument(c.document, keys, want(c.want));
        assert.equal(pk.key.toString('hex'), c.key_hex);
        assert.equal(pk.digest, c.digest);
      } else {
        assertRefused(() => verifyProductKeyDocument(c.document, keys, want(c.want)), DocumentInvalid, 'invalid');
      }
      return undefined;
    case 'firm-key':
      if (c.expect === 'ok') {
        const e = verifyEndorsement(c.document, c.firm_code, keys);
        assert.equal(e.kid, c.endorsed_kid);
        assert.equal(e.digest, c.digest);
        assert.ok(acceptKeys(c.firm_code, keys, [c.document]).has(c.endorsed_kid));
      } else {
        assertRefused(() => verifyEndorsement(c.document, c.firm_code, keys), DocumentInvalid, 'invalid');
        // In an update, such an endorsement is skipped: the key is not accepted.
        assert.ok(!acceptKeys(c.firm_code, keys, [c.document]).has(c.endorsed_kid));
      }
      return undefined;
    default:
      return unknownCase(c, `type ${c.type}`);
  }
});
