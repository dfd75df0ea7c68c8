// Types of examples/express.js.

import type { IncomingMessage, ServerResponse } from "node:http";
import type { Identity, Secret } from "../index.js";

export interface MiddlewareOptions {
  /** The current secret, `[current, previous]` during a rotation, or a function returning them. */
  secrets:
    | Secret
    | readonly (Secret | undefined | null)[]
    | (() => Secret | readonly (Secret | undefined | null)[]);
  /** Refuse signed requests without `X-User-Id` (a public route's) too. Default false. */
  requireUser?: boolean;
  maxSkewSeconds?: number;
  identityHeaders?: readonly string[];
}

export type GardienRequest = IncomingMessage & { originalUrl?: string; gardienIdentity?: Identity };

/** `(req, res, next)`: sets `req.gardienIdentity`, or answers 401 in gardien's error envelope. */
export declare function expressMiddleware(
  options: MiddlewareOptions,
): (req: GardienRequest, res: ServerResponse, next: (err?: unknown) => void) => void;
