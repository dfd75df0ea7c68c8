// End to end: a real `gardien` (GARDIEN_BIN, default ../../target/debug/gardien) in front of
// a Node HTTP upstream that verifies every request with this package. The gateway listens on
// port 0 and reports its ports in its ready file; the upstream holds its own listener.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { Reasons, sign, verify } from "../index.js";
import { expressMiddleware } from "../examples/express.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const GARDIEN_BIN = process.env.GARDIEN_BIN ?? resolve(HERE, "../../../target/debug/gardien");
const INTERNAL_SECRET = "internal-secret-for-node-tests-0123456789";
const NEXT_SECRET = "the-next-internal-secret-0123456789abcdef";
const HS_SECRET = "hs-secret-for-node-tests-0123456789abcdef";
const ISSUER = "https://hs.test";
const AUDIENCE = "gardien-test";
const WAIT_MS = 30_000;
// No test or hook runs longer than this (each wait inside is bounded too).
const BOUND = { timeout: 90_000 };

const POLICY = `
environment: dev
listen: "\${GARDIEN_LISTEN}"
admin_listen: "\${GARDIEN_ADMIN_LISTEN}"
upstreams:
  api: { url: "\${API_UPSTREAM_URL}", connect_timeout: 1s, read_timeout: 2s }
routes:
  - { name: public, prefix: /api/public/, upstream: api, auth: public }
  - { name: mw, prefix: /mw/, upstream: api, auth: public }
  - { name: api, prefix: /api/, upstream: api }
jwt:
  issuers:
    - issuer: "${ISSUER}"
      audiences: [${AUDIENCE}]
      algorithms: [HS256]
      secret: TEST_HS_SECRET
  identity_secret: GARDIEN_INTERNAL_SECRET
server: { threads: 1, graceful_shutdown_timeout: 1s }
`;

const b64url = (value) => Buffer.from(value).toString("base64url");

/** An HS256 token the gateway's issuer accepts. */
function token(claims) {
  const now = Math.floor(Date.now() / 1000);
  const body = { iss: ISSUER, aud: AUDIENCE, iat: now, nbf: now, exp: now + 600, ...claims };
  const unsigned = `${b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${b64url(JSON.stringify(body))}`;
  return `${unsigned}.${createHmac("sha256", HS_SECRET).update(unsigned).digest("base64url")}`;
}

async function sleep(ms) {
  await new Promise((done) => setTimeout(done, ms));
}

/** `fetch` that gives up after a few seconds. */
function get(url, headers = {}) {
  return fetch(url, { headers, signal: AbortSignal.timeout(5_000) });
}

// What the upstream verified, per request, by path.
const seen = [];
let upstream;
let gateway;
let dir;
let base;

const middleware = expressMiddleware({ secrets: [INTERNAL_SECRET], requireUser: false });

function upstreamHandler(req, res) {
  if (req.url.startsWith("/mw/")) {
    // The example middleware, as the existing API mounts it.
    middleware(req, res, () => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ identity: req.gardienIdentity }));
    });
    return;
  }
  const request = { method: req.method, path: req.url, headers: req.headers };
  const record = {
    url: req.url,
    headers: req.headers,
    current: verify({ ...request, secrets: INTERNAL_SECRET }),
    // A rotation begun on this side: gardien still signs with the previous secret.
    rotating: verify({ ...request, secrets: [NEXT_SECRET, INTERNAL_SECRET] }),
    other: verify({ ...request, secrets: NEXT_SECRET }),
  };
  seen.push(record);
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ ok: record.current.ok }));
}

async function waitReady(path, child, log) {
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    if (existsSync(path)) {
      return readFileSync(path, "utf8");
    }
    if (child.exitCode !== null) {
      break;
    }
    await sleep(20);
  }
  throw new Error(`gardien wrote no ready file in ${WAIT_MS} ms:\n${readFileSync(log, "utf8")}`);
}

async function waitHealthy(admin, log) {
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    try {
      const response = await get(`${admin}/healthz`);
      await response.arrayBuffer();
      if (response.status === 200) {
        return;
      }
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  throw new Error(`gardien not healthy in ${WAIT_MS} ms:\n${readFileSync(log, "utf8")}`);
}

before(async () => {
  assert.ok(existsSync(GARDIEN_BIN), `${GARDIEN_BIN} is missing: run \`cargo build --bin gardien\` or set GARDIEN_BIN`);
  upstream = createServer(upstreamHandler);
  await new Promise((done) => upstream.listen(0, "127.0.0.1", done));
  const upstreamUrl = `http://127.0.0.1:${upstream.address().port}`;

  dir = mkdtempSync(join(tmpdir(), "gardien-node-"));
  const policy = join(dir, "policy.yaml");
  const ready = join(dir, "gardien.ready");
  const log = join(dir, "gardien.log");
  writeFileSync(policy, POLICY);
  const env = { ...process.env };
  // Secrets come from this env only, never from the machine's Google project or /run/secrets.
  for (const name of ["GOOGLE_CLOUD_PROJECT", "SECRET_MANAGER_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS", "FRONTEND_URL"]) {
    delete env[name];
  }
  Object.assign(env, {
    SECRETS_DIR: join(dir, "secrets"),
    GARDIEN_LISTEN: "127.0.0.1:0",
    GARDIEN_ADMIN_LISTEN: "127.0.0.1:0",
    GARDIEN_LOG: "info",
    NO_COLOR: "1",
    API_UPSTREAM_URL: upstreamUrl,
    TEST_HS_SECRET: HS_SECRET,
    GARDIEN_INTERNAL_SECRET: INTERNAL_SECRET,
  });
  const logFd = openSync(log, "w");
  gateway = spawn(GARDIEN_BIN, ["run", "--policy", policy, "--ready-file", ready], {
    env,
    stdio: ["ignore", "ignore", logFd],
  });
  const text = await waitReady(ready, gateway, log);
  const field = (key) => {
    const line = text.split("\n").find((l) => l.startsWith(`${key}=`));
    assert.ok(line, `${key} in the ready file: ${text}`);
    return line.slice(key.length + 1);
  };
  base = `http://${field("listen")}`;
  await waitHealthy(`http://${field("admin_listen")}`, log);
}, BOUND);

after(async () => {
  if (gateway && gateway.exitCode === null) {
    const exited = new Promise((done) => gateway.once("exit", done));
    gateway.kill("SIGKILL");
    await Promise.race([exited, sleep(5_000)]);
  }
  await new Promise((done) => (upstream ? upstream.close(done) : done()));
  if (dir) {
    rmSync(dir, { recursive: true, force: true });
  }
}, BOUND);

/** The upstream's record of the one request gardien forwarded to `url`. */
function seenAt(url) {
  const found = seen.filter((r) => r.url === url);
  assert.equal(found.length, 1, `one request at ${url}, saw ${JSON.stringify(seen.map((r) => r.url))}`);
  return found[0];
}

test("a protected request through gardien verifies with the token's identity", BOUND, async () => {
  const jwt = token({ sub: "u-1", email: "a@b.co", roles: ["admin", "ops"] });
  const response = await get(`${base}/api/me?page=2`, {
    authorization: `Bearer ${jwt}`,
    // A client's own identity headers: gardien replaces them.
    "x-user-id": "forged",
    "x-gardien-identity": "v1;1;" + "0".repeat(64),
  });
  assert.equal(response.status, 200, await response.text());
  const record = seenAt("/api/me?page=2");
  assert.match(record.headers["x-gardien-identity"], /^v1;\d+;[0-9a-f]{64}$/);
  assert.deepEqual(record.current, {
    ok: true,
    identity: {
      userId: "u-1",
      email: "a@b.co",
      roles: ["admin", "ops"],
      headers: { "x-user-email": "a@b.co", "x-user-id": "u-1", "x-user-roles": "admin,ops" },
    },
  });
  assert.equal(record.rotating.ok, true, "the previous secret is accepted during a rotation");
  assert.deepEqual(record.other, { ok: false, reason: Reasons.BAD_SIGNATURE });
});

test("a public request through gardien verifies with no user, forged headers stripped", BOUND, async () => {
  const response = await get(`${base}/api/public/ping`, { "x-user-id": "admin", "x-user-roles": "admin" });
  assert.equal(response.status, 200, await response.text());
  const record = seenAt("/api/public/ping");
  assert.deepEqual(record.current, { ok: true, identity: { userId: null, email: null, roles: [], headers: {} } });
});

test("a request sent straight to the upstream, not through gardien, fails", BOUND, async () => {
  const jwt = token({ sub: "u-2", email: "b@b.co", roles: [] });
  const through = await get(`${base}/api/replayed`, { authorization: `Bearer ${jwt}` });
  assert.equal(through.status, 200, await through.text());
  const genuine = seenAt("/api/replayed");
  assert.equal(genuine.current.ok, true);
  const direct = `http://127.0.0.1:${upstream.address().port}`;
  const now = Math.floor(Date.now() / 1000);
  const attempts = [
    ["/direct/none", { "x-user-id": "admin", "x-user-roles": "admin" }, Reasons.MISSING],
    ["/direct/garbage", { "x-user-id": "admin", "x-gardien-identity": "trust me" }, Reasons.MALFORMED],
    [
      "/direct/wrong-secret",
      {
        "x-user-id": "admin",
        "x-user-roles": "admin",
        "x-gardien-identity": sign({
          method: "GET",
          path: "/direct/wrong-secret",
          headers: { "x-user-id": "admin", "x-user-roles": "admin" },
          secret: "guessed-secret-0123456789abcdef0123456789",
          now,
        }),
      },
      Reasons.BAD_SIGNATURE,
    ],
    // gardien's genuine signature replayed with another identity (same path), then on another path.
    ["/api/replayed?again", { ...pick(genuine.headers), "x-user-id": "admin" }, Reasons.BAD_SIGNATURE],
    ["/direct/replay-path", pick(genuine.headers), Reasons.BAD_SIGNATURE],
  ];
  for (const [path, headers, reason] of attempts) {
    const response = await get(`${direct}${path}`, headers);
    await response.arrayBuffer();
    assert.deepEqual(seenAt(path).current, { ok: false, reason }, path);
  }
  // The same headers unchanged still verify (within the window): the refusals above are the
  // changes', not the transport's.
  const unchanged = await get(`${direct}/api/replayed?unchanged`, pick(genuine.headers));
  await unchanged.arrayBuffer();
  assert.equal(seenAt("/api/replayed?unchanged").current.ok, true);
});

test("the Express-style middleware passes gardien's requests and answers others 401", BOUND, async () => {
  const through = await get(`${base}/mw/hello`);
  assert.equal(through.status, 200);
  assert.deepEqual(await through.json(), { identity: { userId: null, email: null, roles: [], headers: {} } });

  const direct = await get(`http://127.0.0.1:${upstream.address().port}/mw/hello`, {
    "x-user-id": "admin",
    "x-request-id": "req-123",
  });
  assert.equal(direct.status, 401);
  assert.equal(direct.headers.get("content-type"), "application/json");
  const body = await direct.json();
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "request_id"]);
  assert.equal(body.error.code, "unauthenticated");
  assert.equal(body.error.request_id, "req-123");
  assert.match(body.error.message, /did not come through gardien/);
});

/** The identity and signature headers of a recorded request. */
function pick(headers) {
  const out = {};
  for (const name of ["x-user-id", "x-user-email", "x-user-roles", "x-gardien-identity"]) {
    if (headers[name] !== undefined) {
      out[name] = headers[name];
    }
  }
  return out;
}
