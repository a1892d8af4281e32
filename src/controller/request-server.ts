/**
 * Serving the API request subjects (`SUBJECTS.api*`) in the controller's queue group: each request is
 * counted, handed to its handler, and answered with the handler's reply or, should the handler throw or
 * reject, with an error reply carrying the error's code (`errorCodeOf`). A handler's failure never
 * escapes: anything unexpected is answered with `internal` and logged as an error.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { SUBJECTS, encode, errorCodeOf, errorReply, truncateErrorText, type ErrorCode } from '../protocol/index.js';
import type { ControllerMetrics } from './controller-metrics.js';
import { RelayedReply } from './request-router.js';

export type ApiRequest =
  | 'create'
  | 'config'
  | 'delete'
  | 'get'
  | 'list'
  | 'views'
  | 'checkpoints'
  | 'checkpoint'
  | 'trigger_checkpoint'
  | 'job_metrics'
  | 'metrics'
  | 'workers'
  | 'controllers';

/**
 * One handler per request kind; its resolved value is the reply (a `RelayedReply` is sent as it is).
 * `forwarded`: the request came on this controller's forwarding subject, from another controller.
 */
/** A handler answers at once or with a promise; a throw, in either, becomes the error reply. */
export type RequestHandlers = Record<ApiRequest, (msg: Msg, forwarded: boolean) => unknown>;

/** The subject each request kind is served on: every kind has exactly one (the type checks it). */
const SUBJECT_OF: Record<ApiRequest, string> = {
  create: SUBJECTS.apiJobsCreate.wildcard,
  list: SUBJECTS.apiJobsList.wildcard,
  views: SUBJECTS.apiJobsViews.wildcard,
  config: SUBJECTS.apiJobConfig.wildcard,
  delete: SUBJECTS.apiJobDelete.wildcard,
  get: SUBJECTS.apiJobGet.wildcard,
  checkpoints: SUBJECTS.apiJobCheckpoints.wildcard,
  checkpoint: SUBJECTS.apiJobCheckpoint.wildcard,
  trigger_checkpoint: SUBJECTS.apiJobTriggerCheckpoint.wildcard,
  job_metrics: SUBJECTS.apiJobMetrics.wildcard,
  metrics: SUBJECTS.apiMetrics.wildcard,
  workers: SUBJECTS.apiWorkersList.wildcard,
  controllers: SUBJECTS.apiControllersList.wildcard,
};

export interface RequestCounts {
  received: Record<ApiRequest, number>;
  /** RequestRejected requests by error code. */
  rejected: Partial<Record<ErrorCode, number>>;
}

export interface RequestServerOptions {
  nc: NatsConnection;
  /** The queue group the controllers share. */
  queue: string;
  handlers: RequestHandlers;
  /**
   * The prefix of this controller's forwarding subjects (`weir.ctl.controllers.<id>.api.`): each request
   * kind is served there too, outside the queue group, for the requests other controllers forward here.
   */
  forwardPrefix?: string;
  /** Where each request and each rejection is counted too. */
  metrics: ControllerMetrics;
  log: Logger;
}

export interface RequestServer {
  /** What has been received and rejected so far (copies). */
  counts(): RequestCounts;
  /** Drains every subscription: requests already received are still answered. */
  drain(): Promise<void>;
}

/** The message as received, but naming `subject`: its reply and data are the original's. */
function withSubject(msg: Msg, subject: string): Msg {
  return Object.create(msg, { subject: { value: subject } }) as Msg;
}

function codeOf(err: unknown): { code: ErrorCode; message: string } {
  return { code: errorCodeOf(err), message: err instanceof Error ? err.message : String(err) };
}

/** Subscribes to every API subject; the subscriptions are made when this returns (flush the connection to have the server know them). */
export function startRequestServer(options: RequestServerOptions): RequestServer {
  const { nc, queue, handlers, metrics, log } = options;
  const counts: RequestCounts = {
    received: { create: 0, config: 0, delete: 0, get: 0, list: 0, views: 0, checkpoints: 0, checkpoint: 0, trigger_checkpoint: 0, job_metrics: 0, metrics: 0, workers: 0, controllers: 0 },
    rejected: {},
  };

  function serve(kind: ApiRequest, subject: string, forwardedFrom?: string): Subscription {
    return nc.subscribe(forwardedFrom === undefined ? subject : forwardedFrom + subject, {
      ...(forwardedFrom === undefined ? { queue } : {}),
      callback: (err, received) => {
        if (err !== null) {
          log.error({ err, subject }, 'API subscription failed');
          return;
        }
        // A forwarded request is handled as if it had come on its own subject.
        const msg: Msg = forwardedFrom === undefined ? received : withSubject(received, received.subject.slice(forwardedFrom.length));
        counts.received[kind]++;
        metrics.request(kind);
        // A handler that throws synchronously is answered like one that rejects.
        void new Promise<unknown>((resolve) => resolve(handlers[kind](msg, forwardedFrom !== undefined))).then(
          (reply) => msg.respond(reply instanceof RelayedReply ? reply.data : encode(reply)),
          (e: unknown) => {
            const { code, message } = codeOf(e);
            counts.rejected[code] = (counts.rejected[code] ?? 0) + 1;
            metrics.rejection(code);
            if (code === 'internal') log.error({ err: e, subject: msg.subject }, 'API request failed');
            // A client looking a job up is routine: the CLI asks for what the user typed before it tries it
            // as the prefix of an id, and a console asks for jobs that were deleted meanwhile.
            else if (code === 'unknown_job') log.debug({ code, reason: message, subject: msg.subject }, 'API request rejected');
            else log.warn({ code, reason: message, subject: msg.subject }, 'API request rejected');
            try {
              msg.respond(encode(errorReply(code, truncateErrorText(message))));
            } catch (respondErr) {
              log.warn({ err: respondErr }, 'could not send the error reply');
            }
          },
        );
      },
    });
  }

  // In this order: the subscriptions are made, and so answered first, as they were listed before.
  const kinds = Object.keys(SUBJECT_OF) as ApiRequest[];
  const subscriptions = kinds.map((kind) => serve(kind, SUBJECT_OF[kind]));
  if (options.forwardPrefix !== undefined) subscriptions.push(...kinds.map((kind) => serve(kind, SUBJECT_OF[kind], options.forwardPrefix)));

  return {
    counts: () => ({ received: { ...counts.received }, rejected: { ...counts.rejected } }),
    async drain() {
      await Promise.allSettled(subscriptions.map((s) => s.drain()));
    },
  };
}
