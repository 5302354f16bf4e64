// JSON as read (docs/formats.md 1.1) and canonical JSON (1.2).
//
// Values are represented as:
//   null, true, false            as themselves
//   strings                      JavaScript strings (always well-formed UTF-16)
//   integers within ±(2^53 − 1)  JavaScript numbers
//   larger integers              BigInt (the strict reader keeps them exact)
//   floats                       JsonFloat instances, so that `1.0` is never the integer 1
//   arrays                       arrays
//   objects                      plain objects whose own enumerable keys are the members
//                                (a member named "__proto__" is an own property too)

import { DocumentMalformed } from './errors.js';

export const MAX_DEPTH = 32;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

// A number written with a fraction or an exponent.
export class JsonFloat {
  constructor(value) {
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw new TypeError('a JsonFloat holds a finite number');
    }
    this.value = value;
    Object.freeze(this);
  }
  valueOf() {
    return this.value;
  }
  toString() {
    return pythonFloatRepr(this.value);
  }
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

// True when a JavaScript string has no lone surrogate, so it has a UTF-8 encoding.
export function isWellFormed(text) {
  return !LONE_SURROGATE.test(text);
}

function defineMember(obj, key, value) {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * Read one JSON text strictly (1.1).
 *
 * @param {string|Uint8Array} input  the text, as bytes (checked to be UTF-8) or as a string
 * @param {object} [options]
 * @param {number} [options.maxDepth=32]  deepest nesting of arrays and objects accepted
 * @param {boolean} [options.anyInteger=false]  keep integers outside the signed 64-bit
 *        range as BigInt instead of refusing them (never for documents: 1.1 item 5
 *        refuses such integers)
 * @returns the value (see the representation above)
 * @throws {DocumentMalformed} when the text is refused
 */
export function parseStrict(input, { maxDepth = MAX_DEPTH, anyInteger = false } = {}) {
  let text;
  if (typeof input === 'string') {
    if (!isWellFormed(input)) throw new DocumentMalformed('the text holds a lone surrogate');
    text = input;
  } else if (input instanceof Uint8Array) {
    if (input.length >= 3 && input[0] === 0xef && input[1] === 0xbb && input[2] === 0xbf) {
      throw new DocumentMalformed('the text starts with a byte order mark');
    }
    try {
      text = utf8Decoder.decode(input);
    } catch {
      throw new DocumentMalformed('the text is not valid UTF-8');
    }
  } else {
    throw new TypeError('parseStrict reads a string or bytes');
  }
  if (text.charCodeAt(0) === 0xfeff) throw new DocumentMalformed('the text starts with a byte order mark');
  return new Reader(text, maxDepth, anyInteger).document();
}

class Reader {
  constructor(text, maxDepth, anyInteger) {
    this.s = text;
    this.i = 0;
    this.maxDepth = maxDepth;
    this.anyInteger = anyInteger;
  }

  fail(what) {
    throw new DocumentMalformed(`${what} at offset ${this.i}`);
  }

  ws() {
    const s = this.s;
    let i = this.i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
    this.i = i;
  }

  document() {
    this.ws();
    const value = this.value(0);
    this.ws();
    if (this.i !== this.s.length) this.fail('text after the JSON value');
    return value;
  }

  value(depth) {
    const c = this.s[this.i];
    switch (c) {
      case '{':
        return this.object(depth + 1);
      case '[':
        return this.array(depth + 1);
      case '"':
        return this.string();
      case 't':
        return this.literal('true', true);
      case 'f':
        return this.literal('false', false);
      case 'n':
        return this.literal('null', null);
      default:
        if (c === '-' || (c >= '0' && c <= '9')) return this.number();
        return this.fail(c === undefined ? 'unexpected end of the text' : 'unexpected character');
    }
  }

  literal(word, value) {
    if (this.s.startsWith(word, this.i)) {
      this.i += word.length;
      return value;
    }
    return this.fail('unexpected character');
  }

  object(depth) {
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth} levels`);
    this.i++; // {
    const obj = {};
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return obj;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail('expected a string key');
      const key = this.string();
      if (Object.prototype.hasOwnProperty.call(obj, key)) this.fail('duplicate key');
      this.ws();
      if (this.s[this.i] !== ':') this.fail("expected ':'");
      this.i++;
      this.ws();
      defineMember(obj, key, this.value(depth));
      this.ws();
      const c = this.s[this.i];
      if (c === ',') {
        this.i++;
        continue;
      }
      if (c === '}') {
        this.i++;
        return obj;
      }
      this.fail("expected ',' or '}'");
    }
  }

  array(depth) {
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth} levels`);
    this.i++; // [
    const arr = [];
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return arr;
    }
    for (;;) {
      this.ws();
      arr.push(this.value(depth));
      this.ws();
      const c = this.s[this.i];
      if (c === ',') {
        this.i++;
        continue;
      }
      if (c === ']') {
        this.i++;
        return arr;
      }
      this.fail("expected ',' or ']'");
    }
  }

  hex4() {
    const h = this.s.slice(this.i, this.i + 4);
    if (!/^[0-9A-Fa-f]{4}$/.test(h)) this.fail('bad \\u escape');
    this.i += 4;
    return parseInt(h, 16);
  }

  string() {
    const s = this.s;
    this.i++; // opening quote
    let out = '';
    let start = this.i;
    for (;;) {
      const c = s.charCodeAt(this.i);
      if (Number.isNaN(c)) this.fail('unterminated string');
      if (c === 0x22) {
        out += s.slice(start, this.i);
        this.i++;
        return out;
      }
      if (c < 0x20) this.fail('unescaped control character in a string');
      if (c !== 0x5c) {
        this.i++;
        continue;
      }
      out += s.slice(start, this.i);
      this.i++; // backslash
      const e = s[this.i];
      this.i++;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          const u = this.hex4();
          if (u >= 0xd800 && u <= 0xdbff) {
            if (s[this.i] !== '\\' || s[this.i + 1] !== 'u') this.fail('lone surrogate escape');
            this.i += 2;
            const low = this.hex4();
            if (low < 0xdc00 || low > 0xdfff) this.fail('lone surrogate escape');
            out += String.fromCharCode(u, low);
          } else if (u >= 0xdc00 && u <= 0xdfff) {
            this.fail('lone surrogate escape');
          } else {
            out += String.fromCharCode(u);
          }
          break;
        }
        default:
          this.i--;
          this.fail('bad escape');
      }
      start = this.i;
    }
  }

  number() {
    const m = /^-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(this.s.slice(this.i, this.i + 400));
    if (!m) this.fail('bad number');
    // A number token longer than the window is read in full.
    let token = m[0];
    if (token.length === 400) {
      const full = /^-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(this.s.slice(this.i));
      token = full[0];
      m[1] = full[1];
      m[2] = full[2];
    }
    this.i += token.length;
    if (m[1] === undefined && m[2] === undefined) {
      const big = BigInt(token);
      if (!this.anyInteger && (big < INT64_MIN || big > INT64_MAX)) {
        this.fail('integer outside the signed 64-bit range');
      }
      const small = Number(big);
      return Number.isSafeInteger(small) ? small : big;
    }
    const value = Number(token);
    if (!Number.isFinite(value)) this.fail('number is not finite');
    return new JsonFloat(value);
  }
}

// ---------------------------------------------------------------------------
// Canonical JSON (1.2)

function compareKeys(a, b) {
  // Code point order equals the byte order of the UTF-8 encodings.
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

const NAMED_ESCAPES = { 0x22: '\\"', 0x5c: '\\\\', 0x08: '\\b', 0x0c: '\\f', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t' };

function writeString(text) {
  if (typeof text !== 'string' || !isWellFormed(text)) {
    throw new TypeError('canonical JSON: a string holds a lone surrogate');
  }
  let out = '"';
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x20 && c !== 0x22 && c !== 0x5c) continue;
    out += text.slice(start, i);
    out += NAMED_ESCAPES[c] ?? '\\u00' + c.toString(16).padStart(2, '0');
    start = i + 1;
  }
  return out + text.slice(start) + '"';
}

/**
 * Python's repr of a double (1.2 item 9): the shortest decimal that reads back to the
 * same double; an exponent when the decimal exponent is below −4 or at least 16;
 * `.0` after an integral value.
 */
export function pythonFloatRepr(x) {
  if (!Number.isFinite(x)) throw new TypeError('canonical JSON: a float is not finite');
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [mantissa, expText] = Math.abs(x).toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const exp = Number(expText);
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const e = Math.abs(exp).toString().padStart(2, '0');
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${e}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
  const frac = digits.slice(exp + 1);
  return `${sign}${intPart}.${frac || '0'}`;
}

function isPlainObject(v) {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function write(value, parts, depth) {
  if (depth > 10000) throw new TypeError('canonical JSON: value nests too deeply');
  if (value === null) return parts.push('null');
  if (value === true) return parts.push('true');
  if (value === false) return parts.push('false');
  switch (typeof value) {
    case 'string':
      return parts.push(writeString(value));
    case 'bigint':
      return parts.push(value.toString());
    case 'number':
      if (Number.isSafeInteger(value)) return parts.push(Object.is(value, -0) ? '0' : String(value));
      return parts.push(pythonFloatRepr(value));
    default:
  }
  if (value instanceof JsonFloat) return parts.push(pythonFloatRepr(value.value));
  if (Array.isArray(value)) {
    parts.push('[');
    value.forEach((v, i) => {
      if (i) parts.push(',');
      write(v, parts, depth + 1);
    });
    return parts.push(']');
  }
  if (isPlainObject(value)) {
    const keys = Object.keys(value).sort(compareKeys);
    parts.push('{');
    keys.forEach((k, i) => {
      if (i) parts.push(',');
      parts.push(writeString(k), ':');
      write(value[k], parts, depth + 1);
    });
    return parts.push('}');
  }
  throw new TypeError(`canonical JSON: cannot write a value of type ${typeof value}`);
}

/** The canonical JSON text of a value (1.2), as a string. */
export function canonicalString(value) {
  const parts = [];
  write(value, parts, 0);
  return parts.join('');
}

/** The canonical JSON of a value (1.2), as UTF-8 bytes. */
export function canonicalize(value) {
  return Buffer.from(canonicalString(value), 'utf8');
}
