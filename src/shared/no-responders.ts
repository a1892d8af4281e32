import { errors as natsErrors } from '@nats-io/transport-node';

/** Whether a NATS request failed because nobody subscribes to its subject (nats.js reports it two ways). */
export function isNoResponders(err: unknown): boolean {
  return err instanceof natsErrors.NoRespondersError || (err instanceof natsErrors.RequestError && err.isNoResponders());
}
