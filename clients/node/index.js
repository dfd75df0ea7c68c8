// @gardien/identity: checks the `X-Gardien-Identity` signature gardien puts on every request
// it forwards, and signs the identity a service sends when it calls gardien-backend itself.
// The format is docs/IDENTITY.md; the reference implementation is crates/gardien-identity,
// whose rules this file follows exactly (same message, same header set, same window test).
// ES module; no dependency beyond node:crypto.

import { createHmac, timingSafeEqual } from "node:crypto";

/** The header carrying the signature (lower case, as Node's `req.headers` names it). */
export const HEADER = "x-gardien-identity";
/** The version tag of the format. */
export const VERSION = "v1";
/** The identity headers gardien signs with its default `jwt.forward_claims`. */
export const IDENTITY_HEADERS = Object.freeze(["x-user-email", "x-user-id", "x-user-roles"]);
/** gardien-backend's default replay window (`IDENTITY_WINDOW`), in seconds. */
export const DEFAULT_MAX_SKEW_SECONDS = 30;
/** The role gardien-backend lets send notifications as a service. */
export const INTERNAL_ROLE = "internal";

/** Why a request was refused: a fixed set, safe to log or count. */
export const Reasons = Object.freeze({
  MISSING: "missing",
  MALFORMED: "malformed",
  EXPIRED: "expired",
  FUTURE: "future",
  BAD_SIGNATURE: "bad_signature",
});

const U64_MAX = (1n << 64n) - 1n;
const HEX_LENGTH = 64;
// What a header value may hold: HTAB, visible ASCII and obs-text (Node reads header bytes as latin1).
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

function nowSeconds() {
  return Math.floor(Date.now() / 1000);
}

/** The request path as signed: without the query or fragment. */
function pathOnly(path) {
  if (typeof path !== "string" || path === "") {
    throw new TypeError("path must be a non-empty string");
  }
  const end = path.search(/[?#]/);
  return end === -1 ? path : path.slice(0, end);
}

/** Secrets as key buffers: one secret, or [current, previous] during a rotation. */
function keys(secrets) {
  const list = (Array.isArray(secrets) ? secrets : [secrets]).filter(
    (s) => s !== undefined && s !== null && s.length > 0,
  );
  if (list.length === 0) {
    throw new TypeError("at least one non-empty secret is needed");
  }
  return list.map((s) => (typeof s === "string" ? Buffer.from(s, "utf8") : Buffer.from(s)));
}

/** A header's value from a Node `req.headers` object (any name case), or a fetch `Headers`. */
function headerValue(headers, name) {
  if (headers === undefined || headers === null) {
    return undefined;
  }
  if (typeof headers.get === "function" && typeof headers.has === "function") {
    return headers.has(name) ? headers.get(name) : undefined;
  }
  let value = headers[name];
  if (value === undefined) {
    const key = Object.keys(headers).find((k) => k.toLowerCase() === name);
    value = key === undefined ? undefined : headers[key];
  }
  // A repeated header: the first value, as the Rust verifier (`HeaderMap::get`) takes.
  if (Array.isArray(value)) {
    value = value[0];
  }
  return value === undefined || value === null ? undefined : String(value);
}

/** Lower-case hex HMAC-SHA256 of the canonical message; `identity` holds [lower-case name, value]. */
function mac(key, method, path, ts, identity) {
  const hmac = createHmac("sha256", key);
  hmac.update(`${VERSION}\n${method}\n${path}\n${ts}\n`, "latin1");
  const sorted = [...identity].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [name, value] of sorted) {
    hmac.update(`${name}:`, "latin1");
    hmac.update(value, "latin1");
    hmac.update("\n", "latin1");
  }
  return hmac.digest("hex");
}

/**
 * Checks `X-Gardien-Identity` on a received request: the version, a timestamp within
 * `maxSkewSeconds` of `now`, and the MAC over the method, the path without the query and the
 * identity headers received, compared in constant time against each secret given (the
 * current one and, during a rotation, the previous one).
 */
export function verify({
  method,
  path,
  headers,
  secrets,
  now = nowSeconds(),
  maxSkewSeconds = DEFAULT_MAX_SKEW_SECONDS,
  identityHeaders = IDENTITY_HEADERS,
}) {
  const candidates = keys(secrets);
  if (typeof method !== "string" || method === "") {
    throw new TypeError("method must be a non-empty string");
  }
  const signedPath = pathOnly(path);
  const names = identityHeaders.map((n) => n.toLowerCase());

  const header = headerValue(headers, HEADER)?.replace(/^[ \t]+|[ \t]+$/g, "");
  if (header === undefined || header === "") {
    return { ok: false, reason: Reasons.MISSING };
  }
  const first = header.indexOf(";");
  const second = first === -1 ? -1 : header.indexOf(";", first + 1);
  if (second === -1) {
    return { ok: false, reason: Reasons.MALFORMED };
  }
  const version = header.slice(0, first);
  const tsText = header.slice(first + 1, second);
  const given = header.slice(second + 1);
  // Rust's u64 parsing: optional `+`, decimal digits, at most 2^64 - 1; signed as normalised.
  if (!/^\+?[0-9]+$/.test(tsText) || BigInt(tsText) > U64_MAX) {
    return { ok: false, reason: Reasons.MALFORMED };
  }
  const ts = BigInt(tsText);
  if (version !== VERSION || !/^[\x21-\x7e]*$/.test(given) || given.length !== HEX_LENGTH) {
    return { ok: false, reason: Reasons.MALFORMED };
  }
  const clock = BigInt(Math.floor(now));
  const skew = BigInt(Math.floor(maxSkewSeconds));
  if (clock - ts > skew) {
    return { ok: false, reason: Reasons.EXPIRED };
  }
  if (ts - clock > skew) {
    return { ok: false, reason: Reasons.FUTURE };
  }

  const identity = [];
  for (const name of names) {
    const value = headerValue(headers, name);
    if (value !== undefined) {
      identity.push([name, value]);
    }
  }
  const givenBytes = Buffer.from(given, "latin1");
  // Every secret is tried, so the time taken does not say which one matched.
  let matched = false;
  for (const key of candidates) {
    const expected = Buffer.from(mac(key, method, signedPath, ts.toString(), identity), "latin1");
    matched = timingSafeEqual(expected, givenBytes) || matched;
  }
  if (!matched) {
    return { ok: false, reason: Reasons.BAD_SIGNATURE };
  }
  return { ok: true, identity: identityOf(identity) };
}

/** What a verified request says about its caller; `userId` is null on a public route. */
function identityOf(identity) {
  const get = (name) => {
    const found = identity.find(([n]) => n === name);
    const value = found === undefined ? "" : found[1].trim();
    return value === "" ? null : value;
  };
  const roles = (get("x-user-roles") ?? "")
    .split(",")
    .map((r) => r.trim())
    .filter((r) => r !== "");
  return {
    userId: get("x-user-id"),
    email: get("x-user-email"),
    roles,
    headers: Object.fromEntries(identity),
  };
}

/**
 * The `X-Gardien-Identity` value for a request this service sends itself (to gardien-backend,
 * say): signed over `method`, `path` (its query is not signed) and every header in `headers`
 * (the identity headers sent with it, any name case), at `now` (unix seconds).
 */
export function sign({ method, path, headers = {}, secret, now = nowSeconds() }) {
  const [key] = keys(secret);
  if (typeof method !== "string" || method === "") {
    throw new TypeError("method must be a non-empty string");
  }
  if (!Number.isSafeInteger(now) || now < 0) {
    throw new TypeError("now must be unix seconds (a non-negative integer)");
  }
  const identity = [];
  for (const [name, raw] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    const value = String(raw);
    if (identity.some(([n]) => n === lower)) {
      throw new TypeError(`header ${lower} is given twice`);
    }
    if (!HEADER_VALUE.test(value)) {
      throw new TypeError(`header ${lower} has a value that cannot be sent`);
    }
    identity.push([lower, value]);
  }
  return `${VERSION};${now};${mac(key, method, pathOnly(path), String(now), identity)}`;
}

/**
 * The headers the existing API sends when it calls gardien-backend as a service:
 * `X-User-Id` (recorded as `requested_by`), `X-User-Roles: internal` and their signature.
 */
export function internalHeaders({
  method,
  path,
  secret,
  userId = "svc-api",
  roles = [INTERNAL_ROLE],
  now = nowSeconds(),
}) {
  const identity = { "X-User-Id": userId, "X-User-Roles": roles.join(",") };
  return {
    ...identity,
    "X-Gardien-Identity": sign({ method, path, headers: identity, secret, now }),
  };
}
