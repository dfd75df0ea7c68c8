// verify(): every refusal reason, tampering, the replay window, rotation.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Reasons, sign, verify } from "../index.js";

const KEY = "current-secret-for-tests-0123456789abcdef";
const PREVIOUS = "previous-secret-for-tests-0123456789abcd";
const NOW = 1_800_000_000;
const IDENTITY = { "x-user-id": "u-1", "x-user-email": "a@b.co", "x-user-roles": "admin" };

function signed(overrides = {}) {
  const secret = overrides.secret ?? KEY;
  const value = sign({ method: "GET", path: "/api/me", headers: IDENTITY, secret, now: overrides.ts ?? NOW });
  return { ...IDENTITY, "x-gardien-identity": value };
}

function check(overrides = {}) {
  return verify({
    method: "GET",
    path: "/api/me",
    headers: signed(),
    secrets: KEY,
    now: NOW,
    ...overrides,
  });
}

test("a signed request verifies, its query ignored", () => {
  assert.equal(check().ok, true);
  assert.equal(check({ path: "/api/me?page=2" }).ok, true);
});

test("a missing or empty header is `missing`", () => {
  assert.deepEqual(check({ headers: IDENTITY }), { ok: false, reason: Reasons.MISSING });
  assert.deepEqual(check({ headers: { ...IDENTITY, "x-gardien-identity": "  " } }), {
    ok: false,
    reason: Reasons.MISSING,
  });
});

test("shapes other than v1;<ts>;<64 hex> are `malformed`", () => {
  const mac = signed()["x-gardien-identity"].split(";")[2];
  for (const bad of [
    "v1",
    "v1;1800000000",
    "v1;x;" + mac,
    "v1;-1;" + mac,
    "v1;1.5;" + mac,
    "v1;18446744073709551616;" + mac,
    "v2;1800000000;" + mac,
    "v1;1800000000;abc",
    "v1;1800000000;" + mac + "00",
  ]) {
    assert.deepEqual(check({ headers: { ...IDENTITY, "x-gardien-identity": bad } }), {
      ok: false,
      reason: Reasons.MALFORMED,
    }, bad);
  }
});

test("a timestamp outside the window is `expired` or `future`; its edge is inside", () => {
  assert.equal(check({ now: NOW + 30 }).ok, true);
  assert.equal(check({ now: NOW - 30 }).ok, true);
  assert.deepEqual(check({ now: NOW + 31 }), { ok: false, reason: Reasons.EXPIRED });
  assert.deepEqual(check({ now: NOW - 31 }), { ok: false, reason: Reasons.FUTURE });
  assert.deepEqual(check({ now: NOW + 100, maxSkewSeconds: 99 }), { ok: false, reason: Reasons.EXPIRED });
  assert.equal(check({ now: NOW + 100, maxSkewSeconds: 100 }).ok, true);
});

test("a tampered method, path, identity header or timestamp is `bad_signature`", () => {
  const bad = { ok: false, reason: Reasons.BAD_SIGNATURE };
  assert.deepEqual(check({ method: "POST" }), bad);
  assert.deepEqual(check({ path: "/api/you" }), bad);
  assert.deepEqual(check({ path: "/api/me/" }), bad);
  for (const name of Object.keys(IDENTITY)) {
    assert.deepEqual(check({ headers: { ...signed(), [name]: "tampered" } }), bad, name);
    const dropped = signed();
    delete dropped[name];
    assert.deepEqual(check({ headers: dropped }), bad, `without ${name}`);
  }
  // An identity header added to a public route's signature.
  const publicSig = sign({ method: "GET", path: "/api/me", secret: KEY, now: NOW });
  assert.equal(check({ headers: { "x-gardien-identity": publicSig } }).ok, true);
  assert.deepEqual(check({ headers: { "x-gardien-identity": publicSig, "x-user-id": "admin" } }), bad);
  const [, , mac] = signed()["x-gardien-identity"].split(";");
  assert.deepEqual(check({ headers: { ...IDENTITY, "x-gardien-identity": `v1;${NOW + 1};${mac}` } }), bad);
  assert.deepEqual(check({ headers: { ...IDENTITY, "x-gardien-identity": `v1;${NOW};${mac.toUpperCase()}` } }), bad);
  // 64 characters that are not hex: the Rust verifier's `BadSignature` too, not `Malformed`.
  assert.deepEqual(check({ headers: { ...IDENTITY, "x-gardien-identity": `v1;${NOW};${mac.slice(0, 63)};` } }), bad);
});

test("a header not in the signed set does not matter; a custom set is honoured", () => {
  assert.equal(check({ headers: { ...signed(), "x-user-tenant": "t-9" } }).ok, true);
  const headers = { "x-user-id": "u-1", "x-user-tenant": "t-9" };
  const value = sign({ method: "GET", path: "/api/me", headers, secret: KEY, now: NOW });
  const result = check({
    headers: { ...headers, "x-gardien-identity": value },
    identityHeaders: ["X-User-Id", "X-User-Tenant"],
  });
  assert.equal(result.ok, true);
  assert.deepEqual(result.identity.headers, headers);
});

test("the wrong secret is refused; during a rotation the previous one is accepted", () => {
  assert.deepEqual(check({ secrets: "another-secret" }), { ok: false, reason: Reasons.BAD_SIGNATURE });
  const old = signed({ secret: PREVIOUS });
  assert.deepEqual(check({ headers: old }), { ok: false, reason: Reasons.BAD_SIGNATURE });
  assert.equal(check({ headers: old, secrets: [KEY, PREVIOUS] }).ok, true);
  assert.equal(check({ secrets: [KEY, PREVIOUS] }).ok, true);
  assert.equal(check({ secrets: [KEY, undefined] }).ok, true);
  assert.equal(check({ secrets: Buffer.from(KEY) }).ok, true);
});

test("header names in any case and fetch Headers are read", () => {
  const upper = Object.fromEntries(Object.entries(signed()).map(([k, v]) => [k.toUpperCase(), v]));
  assert.equal(check({ headers: upper }).ok, true);
  assert.equal(check({ headers: new Headers(signed()) }).ok, true);
});

test("roles are split and trimmed; a caller's mistakes throw, client input never does", () => {
  const headers = { "x-user-id": "u-1", "x-user-roles": "a, b,,c" };
  const value = sign({ method: "GET", path: "/x", headers, secret: KEY, now: NOW });
  const result = verify({ method: "GET", path: "/x", headers: { ...headers, "x-gardien-identity": value }, secrets: KEY, now: NOW });
  assert.deepEqual(result.identity.roles, ["a", "b", "c"]);
  assert.throws(() => check({ secrets: "" }), TypeError);
  assert.throws(() => check({ secrets: [] }), TypeError);
  assert.throws(() => sign({ method: "GET", path: "/x", headers: { a: "1", A: "2" }, secret: KEY }), TypeError);
  assert.throws(() => sign({ method: "GET", path: "/x", headers: { a: "line\nbreak" }, secret: KEY }), TypeError);
  for (const junk of ["\u0000", "v1;;", ";;;", "v1;1;" + "é".repeat(64), "v1;" + "9".repeat(400) + ";x"]) {
    assert.equal(check({ headers: { "x-gardien-identity": junk } }).ok, false, junk);
  }
});
