import type { Msg } from '@nats-io/transport-node';
import { encode } from './codec.js';
import { RequestRejected } from './errors.js';

/** Answers a request (a plain publish has nobody to answer); a reply that cannot be sent is only logged. */
export function replyTo(msg: Msg, reply: unknown, log: { warn(obj: object, msg: string): void }): void {
  if (msg.reply === undefined || msg.reply === '') return;
  try {
    msg.respond(encode(reply));
  } catch (err) {
    log.warn({ err, subject: msg.subject }, 'could not send a reply');
  }
}

/** The rejection an exception in a request handler stands for: itself, or an `internal` error. */
export function rejectionOf(err: unknown): RequestRejected {
  return err instanceof RequestRejected ? err : new RequestRejected('internal', `internal error: ${err instanceof Error ? err.message : String(err)}`);
}
