/**
 * nats.js 3.4 `RequestOne.cancel()` rejects its deferred with a fresh `RequestError('cancelled')` even
 * after a reply resolved it, and `resolver()` always ends with `cancel()`: every successful request and
 * every JetStream publish (each KV write) builds an Error with a captured stack that nobody sees. In
 * bench:controller that was 14 % of the controller's busy time. `noAsyncTraces` does not reach this path.
 *
 * This marks a request settled when its reply arrives and skips the dead rejection; a cancel before a
 * reply (connection closed, drain) still rejects exactly as before. Applied once per process by the
 * entry points; remove it when nats.js stops allocating there (checked by test/cli/nats-request-fix.test.ts).
 */
import { RequestError } from '@nats-io/nats-core';
import { RequestOne } from '@nats-io/nats-core/internal';

const settled = Symbol('weir.settled');

interface PatchableRequest {
  [settled]?: boolean;
  timer?: { cancel(): void };
  mux: { cancel(request: unknown): void };
  deferred: { reject(err: unknown): void };
}

let applied = false;

export function applyNatsRequestFix(): void {
  if (applied) return;
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
}
