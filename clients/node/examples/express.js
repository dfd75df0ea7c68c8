// An Express-style middleware over @gardien/identity: `(req, res, next)`, no Express needed
// (it uses only Node's `req`/`res`, which Express extends). It sets `req.gardienIdentity`
// when the request came through gardien, and otherwise answers 401 in gardien's JSON error
// envelope. ES module.
//
//   import express from "express";
//   import { expressMiddleware } from "@gardien/identity/express";
//   const app = express();
//   app.use(expressMiddleware({ secrets: [process.env.GARDIEN_INTERNAL_SECRET,
//                                         process.env.GARDIEN_INTERNAL_SECRET_PREVIOUS] }));
//   app.get("/api/me", (req, res) => res.json(req.gardienIdentity));

import { randomUUID } from "node:crypto";

import { verify } from "../index.js";

/** What the 401 says for each refusal (the reason itself is in the message, for the caller). */
const MESSAGES = {
  missing: "this request did not come through gardien (no X-Gardien-Identity)",
  malformed: "X-Gardien-Identity is malformed",
  expired: "X-Gardien-Identity is stale (replayed, or clocks apart)",
  future: "X-Gardien-Identity is from the future (clocks apart)",
  bad_signature: "X-Gardien-Identity does not match this request",
  no_user: "no identity: call this through gardien with a valid token",
};

/** Answers 401 in the shared envelope `{"error":{"code","message","request_id"}}`. */
function refuse(req, res, reason) {
  const given = req.headers["x-request-id"];
  const requestId = typeof given === "string" && given !== "" ? given : randomUUID();
  const body = JSON.stringify({
    error: { code: "unauthenticated", message: MESSAGES[reason], request_id: requestId },
  });
  res.statusCode = 401;
  res.setHeader("content-type", "application/json");
  res.setHeader("cache-control", "no-store");
  res.setHeader("x-request-id", requestId);
  res.end(body);
}

/**
 * The middleware. `secrets`: the current secret, or `[current, previous]` during a rotation
 * (or a function returning them, to read a rotated value at each request).
 * `requireUser`: refuse signed requests without `X-User-Id` too (routes gardien protects).
 */
export function expressMiddleware({ secrets, requireUser = false, maxSkewSeconds, identityHeaders }) {
  if (secrets === undefined || secrets === null) {
    throw new TypeError("expressMiddleware needs the internal secret");
  }
  return function gardienIdentity(req, res, next) {
    const result = verify({
      method: req.method,
      // Express rewrites `req.url` under a mounted router; `originalUrl` is what gardien signed.
      path: req.originalUrl ?? req.url,
      headers: req.headers,
      secrets: typeof secrets === "function" ? secrets() : secrets,
      maxSkewSeconds,
      identityHeaders,
    });
    if (!result.ok) {
      refuse(req, res, result.reason);
      return;
    }
    if (requireUser && result.identity.userId === null) {
      refuse(req, res, "no_user");
      return;
    }
    req.gardienIdentity = result.identity;
    next();
  };
}
