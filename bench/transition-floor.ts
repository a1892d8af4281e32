/**
 * The floor of bench:controller's config-update path, run by it in a process of its own as the controller
 * is (`tsx bench/transition-floor.ts URL`): answers each request on `PATH_FLOOR.subject` by making one KV
 * compare-and-set and then replying. A config update can be no faster than this: one hop to another
 * process, one compare-and-set there, seen by a watcher. Plain nats.js, nothing of weir's.
 */
import { pathToFileURL } from 'node:url';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';

export const PATH_FLOOR = { subject: 'bench.path.cas', bucket: 'bench_path_floor' } as const;

async function main(url: string): Promise<void> {
  const nc = await connect({ servers: url, name: 'bench-path-floor' });
  const kv = await new Kvm(jetstream(nc)).create(PATH_FLOOR.bucket, { history: 1 });
  let revision = await kv.put('k', JSON.stringify({ n: -1 }));
  nc.subscribe(PATH_FLOOR.subject, {
    callback: (_err, msg) => {
      void kv.update('k', msg.data, revision).then(
        (r) => {
          revision = r;
          msg.respond(JSON.stringify({ revision: r }));
        },
        (err: unknown) => msg.respond(JSON.stringify({ error: String(err) })),
      );
    },
  });
  await nc.flush();
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => void nc.close().then(() => process.exit(0)));
}

// Run as a program, not when bench/controller.ts imports the subject and bucket.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const url = process.argv[2];
  if (url === undefined) throw new Error('usage: transition-floor.ts URL');
  await main(url);
}
