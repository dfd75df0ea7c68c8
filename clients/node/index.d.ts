// Types of @gardien/identity (index.js, an ES module). Written by hand: the package has no
// build step.

/// <reference types="node" />

/** The header carrying the signature, lower case. */
export declare const HEADER: "x-gardien-identity";
/** The version tag of the format. */
export declare const VERSION: "v1";
/** The identity headers gardien signs with its default `jwt.forward_claims`. */
export declare const IDENTITY_HEADERS: readonly string[];
/** gardien-backend's default replay window, in seconds (30). */
export declare const DEFAULT_MAX_SKEW_SECONDS: number;
/** The role gardien-backend lets send notifications as a service. */
export declare const INTERNAL_ROLE: "internal";

/** Why a signature was refused. */
export type Reason = "missing" | "malformed" | "expired" | "future" | "bad_signature";
export declare const Reasons: Readonly<{
  MISSING: "missing";
  MALFORMED: "malformed";
  EXPIRED: "expired";
  FUTURE: "future";
  BAD_SIGNATURE: "bad_signature";
}>;

/** A secret: its bytes, or a string taken as UTF-8. */
export type Secret = string | Buffer | Uint8Array;

/** Request headers: Node's `req.headers` (any name case) or a fetch `Headers`. */
export type HeaderSource =
  | Record<string, string | string[] | undefined>
  | { get(name: string): string | null; has(name: string): boolean };

export interface VerifyOptions {
  /** The request method as received, e.g. `GET`. */
  method: string;
  /** The request path as received; a query or fragment is ignored (it is not signed). */
  path: string;
  headers: HeaderSource;
  /** The current secret, or `[current, previous]` during a rotation: either is accepted. */
  secrets: Secret | readonly (Secret | undefined | null)[];
  /** Unix seconds; defaults to the clock. */
  now?: number;
  /** The replay window: further than this from `now` is refused. Default 30. */
  maxSkewSeconds?: number;
  /** The signed identity headers, when the policy sets `jwt.forward_claims`. */
  identityHeaders?: readonly string[];
}

export interface Identity {
  /** `X-User-Id`; null on a public route (no token). */
  userId: string | null;
  /** `X-User-Email`, or null. */
  email: string | null;
  /** `X-User-Roles` split on `,`; empty when none. */
  roles: string[];
  /** Every signed identity header received, by lower-case name. */
  headers: Record<string, string>;
}

export type VerifyResult = { ok: true; identity: Identity } | { ok: false; reason: Reason };

/** Checks `X-Gardien-Identity` on a received request. Throws only on a caller's mistake (no secret). */
export declare function verify(options: VerifyOptions): VerifyResult;

export interface SignOptions {
  method: string;
  /** The path the request is sent to; its query is not signed. */
  path: string;
  /** The identity headers sent with the request (any name case); all are signed. */
  headers?: Record<string, string>;
  secret: Secret;
  /** Unix seconds; defaults to the clock. */
  now?: number;
}

/** The `X-Gardien-Identity` value: `v1;<unix-ts>;<hex>`. */
export declare function sign(options: SignOptions): string;

export interface InternalHeadersOptions {
  method: string;
  path: string;
  secret: Secret;
  /** Recorded by gardien-backend as `requested_by`. Default `svc-api`. */
  userId?: string;
  /** Default `["internal"]`. */
  roles?: readonly string[];
  now?: number;
}

/** `X-User-Id`, `X-User-Roles` and their `X-Gardien-Identity`, to send to gardien-backend. */
export declare function internalHeaders(options: InternalHeadersOptions): {
  "X-User-Id": string;
  "X-User-Roles": string;
  "X-Gardien-Identity": string;
};
