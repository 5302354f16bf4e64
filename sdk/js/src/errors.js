// Error classes. Every error has:
//   name     the class name (LicenseExpired, DocumentInvalid, ...)
//   outcome  the word docs/formats.md section 13 uses for it (invalid, refused,
//            replay, other-container, LicenseExpired, ...)
//   code     licentia's error number (docs/errors.md) where there is one
//   reason   what failed, for logs; never shown to an end user as the only message

export class LicentiaError extends Error {
  constructor(message, { reason, outcome, code } = {}) {
    super(message);
    this.name = new.target.name;
    this.reason = reason ?? message;
    if (outcome !== undefined) this.outcome = outcome;
    if (code !== undefined) this.code = code;
  }
}

// A signed document (or a field in it) that a reader refuses. Applications report
// it as LicenseInvalid (code 11) with a generic message; `reason` says which check
// failed.
export class DocumentInvalid extends LicentiaError {
  constructor(reason) {
    super('the document is not valid', { reason, outcome: 'invalid', code: 11 });
  }
}

// JSON text that the strict reader (1.1) refuses, or base64url that is not canonical
// (1.3). A document holding it is invalid, so this is a DocumentInvalid too.
export class DocumentMalformed extends DocumentInvalid {
  constructor(reason) {
    super(reason);
    this.message = 'malformed input';
    this.outcome = 'refused';
  }
}

// A ticket id, serial, item id or code that does not read (section 2).
export class InvalidCode extends LicentiaError {
  constructor(reason) {
    super(reason, { reason, outcome: 'invalid' });
  }
}

// An update refused by a container for another serial or an old sequence number
// (7.1 steps 14 and 16). outcome is 'other-container' or 'replay'.
export class ActivationError extends LicentiaError {
  constructor(outcome, message) {
    super(message, { reason: message, outcome, code: 30 });
  }
}

// A protected data file that does not parse or whose chunk does not authenticate.
export class ProtectedDataError extends LicentiaError {
  constructor(reason) {
    super(reason, { reason, outcome: 'refused' });
  }
}

// Evaluation outcomes (section 5). Each carries effectiveTime and clockBehind.
export class LicenseError extends LicentiaError {
  constructor(message, extra = {}) {
    const code = new.target.errorCode ?? 1;
    super(message, { reason: message, outcome: new.target.name, code });
    Object.assign(this, extra);
  }
}

function licenseError(name, code) {
  const cls = { [name]: class extends LicenseError {} }[name];
  cls.errorCode = code;
  return cls;
}

export const LicenseNotFound = licenseError('LicenseNotFound', 10);
export const LicenseExpired = licenseError('LicenseExpired', 12);
export const LicenseNotYetValid = licenseError('LicenseNotYetValid', 13);
export const UnitsExhausted = licenseError('UnitsExhausted', 14);
export const FeatureNotLicensed = licenseError('FeatureNotLicensed', 15);
export const ClockTampered = licenseError('ClockTampered', 16);
export const MaintenanceExpired = licenseError('MaintenanceExpired', 17);
export const SyncRequired = licenseError('SyncRequired', 18);
