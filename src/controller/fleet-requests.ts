/**
 * Seeing the fleet (`weir.api.controllers.list`): every controller the shard leases name, with the shards
 * and jobs each owns and how long ago its leases and presence were renewed. Whichever controller receives
 * the request answers for the whole fleet from its own view of the leases bucket; jobs are counted per
 * owner from the job ids in the jobs bucket.
 */
import type { Msg } from '@nats-io/transport-node';
import { PROTOCOL_VERSION, listControllersRequestSchema, type ControllerViewMessage, type ListControllersReply } from '../protocol/index.js';
import type { Store } from '../store/index.js';
import { body } from './request-parsing.js';
import type { ShardLeases } from './shard-leases.js';
import { shardOf } from './shards.js';

export interface FleetRequestsOptions {
  leases: Pick<ShardLeases, 'fleet' | 'ownerOf' | 'shards' | 'ttlMs'>;
  /** This controller: the reply's `answered_by`. */
  controllerId: string;
  store: Pick<Store, 'jobs'>;
  /** Largest accepted request. */
  maxMessageBytes: number;
}

export interface FleetRequests {
  controllers: (msg: Msg) => Promise<ListControllersReply>;
}

export function fleetRequests(options: FleetRequestsOptions): FleetRequests {
  const { leases, controllerId, store, maxMessageBytes: maxBytes } = options;

  async function controllerList(msg: Msg): Promise<ListControllersReply> {
    body(listControllersRequestSchema, msg, maxBytes);
    const jobsOf = new Map<string, number>();
    for (const jobId of await store.jobs.list()) {
      const owner = leases.ownerOf(shardOf(jobId, leases.shards));
      if (owner !== null) jobsOf.set(owner, (jobsOf.get(owner) ?? 0) + 1);
    }
    const rows = new Map<string, ControllerViewMessage>();
    for (const view of leases.fleet()) {
      rows.set(view.controllerId, {
        controller_id: view.controllerId,
        jobs: jobsOf.get(view.controllerId) ?? 0,
        shards: view.shards,
        oldest_lease_age_ms: view.oldestLeaseAgeMs,
        presence_age_ms: view.presenceAgeMs,
        live: view.live,
      });
    }
    // An owner the fleet view lacks (its lease was seen between the two reads) still shows its jobs and shards.
    for (const [owner, jobs] of jobsOf) {
      if (rows.has(owner)) continue;
      let shards = 0;
      for (let shard = 0; shard < leases.shards; shard++) if (leases.ownerOf(shard) === owner) shards++;
      // This controller is live: it is answering.
      rows.set(owner, { controller_id: owner, jobs, shards, oldest_lease_age_ms: null, presence_age_ms: null, live: owner === controllerId });
    }
    const data = [...rows.values()].sort((a, b) => (a.controller_id < b.controller_id ? -1 : a.controller_id > b.controller_id ? 1 : 0));
    return { v: PROTOCOL_VERSION, shards: leases.shards, lease_ttl_ms: leases.ttlMs, answered_by: controllerId, data };
  }

  return { controllers: controllerList };
}
