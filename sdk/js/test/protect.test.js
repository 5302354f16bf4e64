import assert from 'node:assert/strict';
import { runVectorFile, assertRefused, unknownCase } from './helpers.js';
import { openProtectedData, readDataHeader, dataFileKey, ProtectedDataError } from '../src/index.js';

runVectorFile('protect.json', (c, data) => {
  const key = Buffer.from(data.product_key_hex, 'hex');
  const file = Buffer.from(c.file_hex, 'hex');
  if (c.expect === 'ok') {
    const r = openProtectedData(file, key);
    assert.equal(r.plaintext.toString('hex'), c.plaintext_hex);
    assert.equal(r.chunks, c.chunks);
    if (c.header_json !== undefined) {
      const { headerBytes, header } = readDataHeader(file);
      assert.equal(headerBytes.subarray(10).toString('utf8'), c.header_json);
      assert.equal(dataFileKey(key, header.salt).toString('hex'), c.file_key_hex);
    }
  } else if (c.expect === 'refused') {
    assertRefused(() => openProtectedData(file, key), ProtectedDataError, 'refused');
  } else {
    unknownCase(c, `expect ${c.expect}`);
  }
  return undefined;
});
