// @licentia/verify: offline verification of licentia's documents, following
// docs/formats.md of the licentia project.

export * from './errors.js';
export { parseStrict, canonicalize, canonicalString, pythonFloatRepr, JsonFloat, MAX_DEPTH } from './json.js';
export { decodeBase64url, encodeBase64url } from './base64url.js';
export {
  keyId,
  keySet,
  publicKeyEntry,
  splitPem,
  sha256,
  ed25519Verify,
  ed25519PublicKeyObject,
  x25519PublicFromPrivate,
} from './keys.js';
export {
  ALPHABET,
  checkCharacter,
  normalizeTicketId,
  checkTicketId,
  isCanonicalTicketId,
  isSerial,
  checkSerial,
  isItemId,
  checkItemId,
  normalizeItemId,
  isFirmCode,
  isProductCode,
  isFeature,
  checkFirmCode,
  checkProductCode,
  checkFeature,
} from './codes.js';
export { readEnvelope, verifyEnvelope, signingInput, digest, MAX_DOCUMENT_BYTES } from './envelope.js';
export { verifyLicense, readLicensePayload, isTimeBound } from './license.js';
export { evaluate, evaluateLease, evaluateBorrowed, findLicense, closestRefusal, effectiveTime, unitsLeft, nowSeconds, CLOCK_TOLERANCE } from './evaluate.js';
export { verifyUpdate, applyUpdate, applyAck, acceptKeys, verifyEndorsement } from './update.js';
export {
  openSealedBox,
  unsealProductKey,
  unsealLeaseKey,
  productKeyContext,
  leaseKeyContext,
  productKeyInfo,
  deriveProductKey,
  containerPublicKeys,
  x25519PrivateFrom,
} from './sealing.js';
export {
  readSlotPosition,
  verifyRequest,
  verifyReceipt,
  verifyReportAck,
  verifyConsume,
  verifyConsumption,
  verifyProductKeyDocument,
  MODES,
  verifyLease,
  verifyBorrowGrant,
  verifyBorrowReturn,
  verifyGraceReturn,
  verifySeatProof,
  verifyCloudLink,
  verifyProxyGrant,
  CLOUD_LINK_SKEW,
  leaseRequestProofPayload,
  verifyProof,
  verifyLeaseRequestProof,
  verifyLeaseCounterProof,
} from './documents.js';
export { openProtectedData, readDataHeader, dataFileKey, DATA_MAGIC } from './protect.js';
export {
  verifyUsageUpload,
  verifyUsageAnchor,
  readUsageEvent,
  usageChain,
  USAGE_GENESIS,
  USAGE_EVENT_KINDS,
  USAGE_FINAL_KINDS,
  MAX_UPLOAD_EVENTS,
  MAX_UPLOAD_EVENT_BYTES,
  MAX_EVENT_BYTES,
} from './anchoring.js';
