// License entries (docs/formats.md section 4).

import { DocumentInvalid } from './errors.js';
import { verifyEnvelope } from './envelope.js';
import { T, required, optional, absentOnly, has } from './fields.js';
import { encodeBase64url } from './base64url.js';

// Option name -> [presence, check, default, camelCase name] (4.1).
const OPTIONS = {
  expires: ['optional', T.time, null, 'expires'],
  not_before: ['optional', T.time, null, 'notBefore'],
  usage_period: ['optional', T.int(0), null, 'usagePeriod'],
  units: ['optional', T.int(0), null, 'units'],
  quantity: ['required', T.int(0), null, 'quantity'],
  maintenance_until: ['optional', T.time, null, 'maintenanceUntil'],
  sync_interval: ['optional', T.int(0), null, 'syncInterval'],
  data: ['optional', T.b64(), null, 'data'],
  local_only: ['absent-only', T.bool, false, 'localOnly'],
  report_interval: ['optional', T.int(0), null, 'reportInterval'],
  metering: ['absent-only', T.oneOf('local', 'online'), 'local', 'metering'],
  offline_allowance: ['optional', T.int(0), 0, 'offlineAllowance'],
  max_grace: ['optional', T.int(0), null, 'maxGrace'],
};

function readOptions(options) {
  for (const name of Object.keys(options)) {
    if (!has(OPTIONS, name)) throw new DocumentInvalid(`options.${name}: unknown option`);
  }
  const out = {};
  for (const [name, [presence, check, dflt, camel]] of Object.entries(OPTIONS)) {
    const path = `options.${name}`;
    if (presence === 'required') out[camel] = required(options, name, check, path);
    else if (presence === 'optional') out[camel] = optional(options, name, check, dflt, path);
    else out[camel] = absentOnly(options, name, check, dflt, path);
  }
  return Object.freeze(out);
}

/**
 * Read a license entry's payload by the table of section 4.
 * @returns a frozen object with the fields in camelCase (see README)
 */
export function readLicensePayload(p) {
  const container = required(p, 'container', T.object);
  const entry = {
    firmCode: required(p, 'firm_code', T.firmCode),
    productCode: required(p, 'product_code', T.productCode),
    featureMap: required(p, 'feature_map', T.feature),
    text: required(p, 'text', T.string),
    licenseId: required(p, 'license_id', T.int(1)),
    container: Object.freeze({
      serial: required(container, 'serial', T.serial, 'container.serial'),
      signPub: encodeBase64url(required(container, 'sign_pub', T.b64(32), 'container.sign_pub')),
    }),
    options: readOptions(required(p, 'options', T.object)),
    issued: required(p, 'issued', T.time),
    ticket: optional(p, 'ticket', T.ticket),
    keyVersions: Object.freeze(required(p, 'key_versions', T.distinct(T.arrayOf(T.int(1))))),
    consumedBase: optional(p, 'consumed_base', T.int(0), 0),
    firstUse: optional(p, 'first_use', T.time),
    activation: optional(p, 'activation', T.int(0), 0),
  };
  return entry;
}

/** True when a license is time-bound (4.1). */
export function isTimeBound(options) {
  return options.expires !== null || options.notBefore !== null || options.usagePeriod !== null || options.syncInterval !== null;
}

/**
 * Verify a license entry (type "license") against the firm keys the application pins.
 *
 * @param document  the entry: JSON text, bytes, or the envelope as a value
 * @param firmKeys  the pinned firm key(s): PEM text (one or more blocks), KeyObject,
 *                  32 raw bytes or base64url, or an array of these
 * @returns {License} a frozen object: digest, kid, payload and the fields in camelCase
 * @throws {DocumentInvalid}
 */
export function verifyLicense(document, firmKeys) {
  const v = verifyEnvelope(document, 'license', firmKeys);
  const fields = readLicensePayload(v.payload);
  return Object.freeze({ type: 'license', digest: v.digest, kid: v.kid, payload: v.payload, document: { payload: v.payload, kid: v.kid, sig: v.sig }, ...fields });
}
