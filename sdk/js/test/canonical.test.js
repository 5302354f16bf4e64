import assert from 'node:assert/strict';
import { runVectorFile, assertRefused, unknownCase } from './helpers.js';
import {
  parseStrict,
  canonicalize,
  canonicalString,
  decodeBase64url,
  encodeBase64url,
  keyId,
  publicKeyEntry,
  signingInput,
  sha256,
  DocumentMalformed,
} from '../src/index.js';

runVectorFile('canonical.json', (c) => {
  switch (c.kind) {
    case 'canonical': {
      assert.equal(c.expect, 'accepted');
      // Read from the UTF-8 bytes and from the string: both give the same value.
      for (const input of [Buffer.from(c.input, 'utf8'), c.input]) {
        const value = parseStrict(input);
        const bytes = canonicalize(value);
        assert.equal(bytes.toString('hex'), c.canonical_hex);
        assert.equal(canonicalString(value), c.canonical);
        assert.equal(sha256(bytes).toString('hex'), c.sha256);
        // Canonical JSON is a fixed point.
        assert.equal(canonicalize(parseStrict(bytes)).toString('hex'), c.canonical_hex);
      }
      return undefined;
    }
    case 'strict': {
      const inputs = [Buffer.from(c.input_hex, 'hex')];
      if (c.input !== undefined) {
        assert.equal(Buffer.from(c.input, 'utf8').toString('hex'), c.input_hex, 'input and input_hex agree');
        inputs.push(c.input);
      }
      for (const input of inputs) {
        if (c.expect === 'accepted') parseStrict(input);
        else if (c.expect === 'refused') assertRefused(() => parseStrict(input), DocumentMalformed, 'refused');
        else unknownCase(c, `expect ${c.expect}`);
      }
      return undefined;
    }
    case 'base64url': {
      if (c.expect === 'accepted') {
        const bytes = decodeBase64url(c.input);
        assert.equal(bytes.toString('hex'), c.bytes_hex);
        assert.equal(encodeBase64url(bytes), c.input, 'one spelling per byte string');
      } else {
        assertRefused(() => decodeBase64url(c.input), DocumentMalformed, 'refused');
      }
      return undefined;
    }
    case 'key-id': {
      assert.equal(c.expect, 'accepted');
      const raw = decodeBase64url(c.public_key);
      assert.equal(raw.toString('hex'), c.public_key_hex);
      assert.equal(keyId(raw), c.kid);
      assert.equal(keyId(Buffer.from(c.public_key_hex, 'hex')), c.kid);
      const fromPem = publicKeyEntry(c.public_key_pem);
      assert.equal(fromPem.kid, c.kid);
      assert.equal(fromPem.text, c.public_key);
      assert.equal(publicKeyEntry(c.public_key).kid, c.kid);
      return undefined;
    }
    case 'signing-input': {
      assert.equal(c.expect, 'accepted');
      const bytes = signingInput(c.type, c.payload);
      assert.equal(bytes.toString('hex'), c.message_hex);
      assert.equal(bytes.toString('utf8'), c.message);
      return undefined;
    }
    default:
      return unknownCase(c, `kind ${c.kind}`);
  }
});
