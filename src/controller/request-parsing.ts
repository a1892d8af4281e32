/**
 * What every API request handler reads first: its body, decoded with the request's protocol schema, and
 * the job its subject names. Either failing rejects the request with the code the protocol gives it.
 */
import type { Msg } from '@nats-io/transport-node';
import type { z } from 'zod';
import { decode, isValidId, parseSubject, RequestRejected } from '../protocol/index.js';

/** The request's body as `schema` decodes it; a body over `maxBytes`, or one that does not decode, is rejected. */
export function body<S extends z.ZodType>(schema: S, msg: Msg, maxBytes: number): z.output<S> {
  const result = decode(schema, msg.data, { maxBytes });
  if (!result.ok) throw new RequestRejected(result.error.code, result.error.message);
  return result.value;
}

/** The job id of the request's subject (`weir.api.jobs.<job>.…`); `unknown_job` when it names none. */
export function jobOf(msg: Msg): string {
  const parsed = parseSubject(msg.subject);
  const jobId = parsed?.params['job'];
  if (jobId === undefined || !isValidId(jobId)) throw new RequestRejected('unknown_job', `no job named by ${msg.subject}`);
  return jobId;
}
