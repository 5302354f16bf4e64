import test from 'node:test';
import assert from 'node:assert/strict';
import { runVectorFile, assertRefused, unknownCase } from './helpers.js';
import {
  deriveProductKey,
  productKeyInfo,
  unsealProductKey,
  unsealLeaseKey,
  openSealedBox,
  productKeyContext,
  leaseKeyContext,
  containerPublicKeys,
  x25519PublicFromPrivate,
  decodeBase64url,
  encodeBase64url,
  digest,
  verifyLicense,
  DocumentInvalid,
} from '../src/index.js';

function checkSteps(steps, expected, context) {
  assert.equal(steps.ephemeralPublic.toString('hex'), expected.ephemeral_public_hex);
  assert.equal(steps.sharedSecret.toString('hex'), expected.shared_secret_hex);
  assert.equal(steps.hkdfSalt.toString('hex'), expected.hkdf_salt_hex);
  assert.equal(steps.hkdfInfo.toString('utf8'), expected.hkdf_info);
  assert.equal(steps.aesKey.toString('hex'), expected.aes_key_hex);
  assert.equal(steps.nonce.toString('hex'), expected.nonce_hex);
  assert.equal(steps.aad.toString('utf8'), expected.aad);
  assert.equal(expected.aad, context);
}

const data = runVectorFile('sealing.json', (c, d) => {
  const box = d.container.box_private;
  switch (c.kind) {
    case 'derive': {
      assert.equal(c.expect, 'ok');
      assert.equal(productKeyInfo(c.firm_code, c.product_code, c.version), c.hkdf_info);
      const key = deriveProductKey(Buffer.from(c.firm_secret_hex, 'hex'), c.firm_code, c.product_code, c.version);
      assert.equal(key.toString('hex'), c.product_key_hex);
      return undefined;
    }
    case 'product-key': {
      if (c.expect === 'ok') {
        const key = unsealProductKey(c.sealed_key, box, c.serial);
        assert.equal(key.toString('hex'), c.product_key_hex);
        if (c.product_key !== undefined) assert.equal(encodeBase64url(key), c.product_key);
        // The 64-byte container secret opens it too.
        assert.equal(unsealProductKey(c.sealed_key, d.container.secret_hex, c.serial).toString('hex'), c.product_key_hex);
        const context = productKeyContext(c.serial, c.sealed_key.license, c.sealed_key.version);
        assert.equal(context, c.context);
        const opened = openSealedBox(box, decodeBase64url(c.sealed_key.sealed), Buffer.from(context), { steps: true });
        checkSteps(opened.steps, c.steps, c.context);
        if (c.license_document !== undefined) {
          // The entry the sealed key names: signed by the firm key in `keys`.
          const license = verifyLicense(c.license_document, d.keys);
          assert.equal(license.digest, c.sealed_key.license);
          assert.equal(digest(c.license_document), c.sealed_key.license);
          assert.equal(license.container.serial, c.serial);
        }
      } else if (c.expect === 'invalid') {
        assertRefused(() => unsealProductKey(c.sealed_key, box, c.serial), DocumentInvalid, 'invalid');
      } else {
        unknownCase(c, `expect ${c.expect}`);
      }
      return undefined;
    }
    case 'lease-key': {
      const open = () => unsealLeaseKey(c.sealed_key, c.session_private, c.serial, c.license, c.session);
      if (c.expect === 'ok') {
        assert.equal(open().toString('hex'), c.product_key_hex);
        const context = leaseKeyContext(c.serial, c.license, c.sealed_key.version, c.session);
        assert.equal(context, c.context);
        const opened = openSealedBox(c.session_private, decodeBase64url(c.sealed_key.sealed), Buffer.from(context), { steps: true });
        checkSteps(opened.steps, c.steps, c.context);
        assert.equal(encodeBase64url(x25519PublicFromPrivate(decodeBase64url(c.session_private))), c.session);
      } else if (c.expect === 'invalid') {
        assertRefused(open, DocumentInvalid, 'invalid');
      } else {
        unknownCase(c, `expect ${c.expect}`);
      }
      return undefined;
    }
    default:
      return unknownCase(c, `kind ${c.kind}`);
  }
});

test('sealing.json: the container secret is the Ed25519 seed followed by the X25519 private key', () => {
  const { signPub, boxPub } = containerPublicKeys(data.container.secret_hex);
  assert.equal(encodeBase64url(signPub), data.container.sign_pub);
  assert.equal(encodeBase64url(boxPub), data.container.box_pub);
  const secret = Buffer.from(data.container.secret_hex, 'hex');
  assert.equal(encodeBase64url(secret.subarray(0, 32)), data.container.sign_private);
  assert.equal(encodeBase64url(secret.subarray(32)), data.container.box_private);
});
