/**
 * Requests reach the job's owner (docs/protocol.md, "Several controllers"). Every controller serves
 * `weir.api.jobs.*` in one queue group, so a request lands on any of them:
 * - the owner of the job answers it;
 * - any other controller forwards it to the owner's own subject, `weir.ctl.controllers.<id>.api.<subject>`,
 *   and relays the owner's reply as it is;
 * - while the job's shard has no live owner (a takeover is under way), the request waits for one until
 *   its deadline, then gets `unavailable`.
 * A controller that lost the job while answering answers `unavailable` instead, whether its answer was a
 * reply or an error (a job handed over mid-request is `unknown_job` to it): a reply never comes from a
 * controller that no longer owns the job. A forwarded request is never forwarded again.
 */
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { RequestRejected } from '../protocol/index.js';
import type { JobOwnership } from './job-ownership.js';
import { jobOf } from './request-parsing.js';

/** How long a request waits for a job's shard to get an owner again. Default: a lease TTL and a second, at most 10 s. */
export function ownerWaitMs(ttlMs: number): number {
  return Math.min(10_000, ttlMs + 1_000);
}

const OWNER_POLL_MS = 50;

/** The subject prefix on which a controller takes the requests other controllers forward to it. */
export function forwardPrefix(controllerId: string): string {
  return `weir.ctl.controllers.${controllerId}.api.`;
}

/** A reply relayed as the owner encoded it. */
export class RelayedReply {
  constructor(readonly data: Uint8Array) {}
}

/** A request handler; `forwarded`: another controller forwarded it here. */
export type RoutedHandler = (msg: Msg, forwarded: boolean) => Promise<unknown>;

export interface RequestRouterOptions {
  nc: NatsConnection;
  ownership: JobOwnership;
  /**
   * Whether this controller may answer for the job now: it owns the job and has adopted it (a shard just
   * acquired has its jobs adopted first). Default: it owns the job.
   */
  answersFor?: (jobId: string) => boolean;
  log: Logger;
  /** How long a request waits for an owner. */
  waitMs: number;
}

export class RequestRouter {
  /** Requests forwarded to their owner so far. */
  forwarded = 0;

  constructor(private readonly options: RequestRouterOptions) {}

  /** `handler` for requests about the job the subject names: answered here only while this controller owns it. */
  forJob(handler: (msg: Msg) => Promise<unknown>): RoutedHandler {
    return (msg, forwarded) => {
      const jobId = jobOf(msg);
      const answersFor = this.options.answersFor ?? ((id: string) => this.options.ownership.owns(id));
      return this.route(msg, forwarded, handler, {
        ownedHere: () => answersFor(jobId),
        stillOwned: () => this.options.ownership.owns(jobId),
        owner: () => this.options.ownership.ownerOf(jobId),
        what: `job ${jobId}`,
      });
    };
  }

  /** `handler` for creating a job: answered by any controller that owns a shard (the new job goes there). */
  forCreate(handler: (msg: Msg) => Promise<unknown>): RoutedHandler {
    return (msg, forwarded) =>
      this.route(msg, forwarded, handler, {
        ownedHere: () => this.options.ownership.ownsAny(),
        stillOwned: () => true,
        owner: () => this.options.ownership.anotherOwner(),
        what: 'a new job',
      });
  }

  private async route(
    msg: Msg,
    forwarded: boolean,
    handler: (msg: Msg) => Promise<unknown>,
    target: { ownedHere: () => boolean; stillOwned: () => boolean; owner: () => string | null; what: string },
  ): Promise<unknown> {
    const { nc, log, waitMs } = this.options;
    const deadline = performance.now() + waitMs;
    for (;;) {
      if (target.ownedHere()) {
        const changedOwner = () => new RequestRejected('unavailable', `${target.what} changed owner while the request ran; try again`);
        let reply: unknown;
        try {
          reply = await handler(msg);
        } catch (err) {
          // A job handed over mid-request has left this controller's table: its `unknown_job` is not the answer.
          if (!target.stillOwned()) throw changedOwner();
          throw err;
        }
        if (!target.stillOwned()) throw changedOwner();
        return reply;
      }
      const owner = target.owner();
      const left = deadline - performance.now();
      if (owner !== null && owner !== this.options.ownership.controllerId && !forwarded && left > 0) {
        try {
          const answer = await nc.request(forwardPrefix(owner) + msg.subject, msg.data, { timeout: Math.max(1, Math.floor(left)) });
          this.forwarded++;
          return new RelayedReply(answer.data);
        } catch (err) {
          // The owner died or is slow: look again, until the deadline.
          log.debug({ err, owner, subject: msg.subject }, 'forwarding to the owner failed');
        }
      }
      if (performance.now() >= deadline) {
        throw new RequestRejected('unavailable', `${target.what} has no live owner that answered within ${waitMs} ms (a takeover may be under way); try again`);
      }
      await sleep(OWNER_POLL_MS);
    }
  }
}
