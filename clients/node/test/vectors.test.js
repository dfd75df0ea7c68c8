// The same bytes as crates/gardien-identity's `the_vectors_the_node_client_tests`: the Node
// package and the Rust crate sign and verify identical values.

import assert from "node:assert/strict";
import { test } from "node:test";

import { internalHeaders, sign, verify } from "../index.js";

const KEY = "0123456789abcdef0123456789abcdef";
const TS = 1795632556;
const DOCUMENTED = "v1;1795632556;7f135aa7546b69576c1626a684ef836f5dd5a4a77c528a7c0d9a5c0b064ae8a9";
const INTERNAL = "v1;1795632556;c5e99cfaaf1c9625874d7bbb79208a43ce3593e7b84e7ee59c172de3f97b06da";
const PUBLIC = "v1;1795632556;2af4d330713dc7bc99bc1bd18dd0b5a451557f47ede1dcf26289634f6dfb2429";

test("the documented example (docs/IDENTITY.md) signs to the Rust crate's bytes", () => {
  const headers = { "X-User-Roles": "admin,ops", "X-User-Id": "u-1", "X-User-Email": "a@b.co" };
  assert.equal(sign({ method: "GET", path: "/api/me", headers, secret: KEY, now: TS }), DOCUMENTED);
  const result = verify({
    method: "GET",
    path: "/api/me",
    headers: { ...headers, "x-gardien-identity": DOCUMENTED },
    secrets: KEY,
    now: TS + 4,
  });
  assert.deepEqual(result, {
    ok: true,
    identity: {
      userId: "u-1",
      email: "a@b.co",
      roles: ["admin", "ops"],
      headers: { "x-user-email": "a@b.co", "x-user-id": "u-1", "x-user-roles": "admin,ops" },
    },
  });
});

test("the internal identity for gardien-backend signs to the Rust crate's bytes", () => {
  const headers = internalHeaders({ method: "POST", path: "/api/notifications", secret: KEY, now: TS });
  assert.deepEqual(headers, {
    "X-User-Id": "svc-api",
    "X-User-Roles": "internal",
    "X-Gardien-Identity": INTERNAL,
  });
  const result = verify({ method: "POST", path: "/api/notifications", headers, secrets: KEY, now: TS });
  assert.equal(result.ok, true);
  assert.deepEqual(result.identity.roles, ["internal"]);
  assert.equal(result.identity.userId, "svc-api");
});

test("a public route's empty identity signs to the Rust crate's bytes", () => {
  assert.equal(sign({ method: "GET", path: "/health?probe=1", secret: KEY, now: TS }), PUBLIC);
  const result = verify({
    method: "GET",
    path: "/health",
    headers: { "x-gardien-identity": PUBLIC },
    secrets: KEY,
    now: TS,
  });
  assert.deepEqual(result, { ok: true, identity: { userId: null, email: null, roles: [], headers: {} } });
});
