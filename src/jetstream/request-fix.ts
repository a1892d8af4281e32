/**
 * nats.js 3.4 `RequestOne.cancel()` rejects its deferred with a fresh `RequestError('cancelled')` even
 * after a reply resolved it, and `resolver()` always ends with `cancel()`: every successful request and
 * every JetStream publish (each KV write) builds an Error with a captured stack that nobody sees. In
 * bench:controller that was 14 % of the controller's busy time. `noAsyncTraces` does not reach this path.
 *
 * This marks a request settled when its reply arrives and skips the dead rejection; a cancel before a
 * reply (connection closed, drain) still rejects exactly as before. Applied once per process by the
 * entry points, and only on the nats.js version it was measured on: it reaches into that version's
 * internals, so another version runs unpatched (slower, never wrong) until it is measured again
 * (test/jetstream/request-fix.test.ts).
 */
import { RequestError } from '@nats-io/nats-core';
import { RequestOne } from '@nats-io/nats-core/internal';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** The @nats-io/nats-core version whose RequestOne this patch was written and measured against. */
export const REQUEST_FIX_MEASURED_ON = '3.4.0';

/** The installed @nats-io/nats-core's version (its package.json is not in its exports map). */
export function natsCoreVersion(): string {
  const entry = createRequire(import.meta.url).resolve('@nats-io/nats-core');
  for (let dir = dirname(entry); dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === '@nats-io/nats-core' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // No package.json at this level: look further up.
    }
  }
  return 'unknown';
}

const settled = Symbol('weir.settled');

interface PatchableRequest {
  [settled]?: boolean;
  timer?: { cancel(): void };
  mux: { cancel(request: unknown): void };
  deferred: { reject(err: unknown): void };
}

let applied = false;

/** Patches nats.js once per process; false when the installed version is not the one measured. */
export function applyNatsRequestFix(installed: string = natsCoreVersion()): boolean {
  if (applied) return true;
  if (installed !== REQUEST_FIX_MEASURED_ON) return false;
  applied = true;
  const proto = RequestOne.prototype as unknown as PatchableRequest & {
    resolver: (this: PatchableRequest, err: Error | null, msg: unknown) => void;
    cancel: (this: PatchableRequest, err?: Error) => void;
  };
  const resolver = proto.resolver;
  proto.resolver = function (this: PatchableRequest, err: Error | null, msg: unknown) {
    this[settled] = true;
    resolver.call(this, err, msg);
  };
  proto.cancel = function (this: PatchableRequest, err?: Error) {
    this.timer?.cancel();
    this.mux.cancel(this);
    if (err !== undefined) this.deferred.reject(err);
    else if (this[settled] !== true) this.deferred.reject(new RequestError('cancelled'));
  };
  return true;
}
