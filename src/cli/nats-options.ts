import { readFileSync } from 'node:fs';
import { credsAuthenticator, nkeyAuthenticator, type NodeConnectionOptions } from '@nats-io/transport-node';

/**
 * The servers of a `--nats` / `NATS_URL` value: one URL, or several separated by commas (as the nats CLI
 * takes them), so that a client reaches a cluster through whichever node answers.
 */
export function natsServers(url: string): string[] {
  const servers = url
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (servers.length === 0) throw new Error(`no NATS server in ${JSON.stringify(url)}`);
  return servers;
}

/**
 * NATS connection options from the URL(s) and the NATS_* environment variables (docs/operations.md):
 * credentials and TLS never come from code or command-line arguments. Throws when more than one
 * authentication method is set, rather than letting one silently win.
 */
export function natsOptions(url: string, env: NodeJS.ProcessEnv = process.env): NodeConnectionOptions {
  // noAsyncTraces: nats.js otherwise captures a stack trace on every request and JetStream publish, which
  // cost the controller more CPU than its checkpoints (bench:controller); our logs say where a call began.
  const options: NodeConnectionOptions = { servers: natsServers(url), maxReconnectAttempts: -1, waitOnFirstConnect: true, noAsyncTraces: true };
  const methods = (['NATS_USER', 'NATS_TOKEN', 'NATS_NKEY_SEED_FILE', 'NATS_CREDS'] as const).filter((name) => env[name]);
  if (methods.length > 1) throw new Error(`set one NATS authentication method, not ${methods.join(' and ')}`);
  if (env['NATS_CREDS']) options.authenticator = credsAuthenticator(readFileSync(env['NATS_CREDS']));
  if (env['NATS_NKEY_SEED_FILE']) options.authenticator = nkeyAuthenticator(new TextEncoder().encode(readFileSync(env['NATS_NKEY_SEED_FILE'], 'utf8').trim()));
  if (env['NATS_USER']) {
    options.user = env['NATS_USER'];
    options.pass = env['NATS_PASSWORD'] ?? '';
  }
  if (env['NATS_TOKEN']) options.token = env['NATS_TOKEN'];
  const tls = { caFile: env['NATS_TLS_CA'], certFile: env['NATS_TLS_CERT'], keyFile: env['NATS_TLS_KEY'] };
  if (tls.certFile !== undefined && tls.keyFile === undefined) throw new Error('NATS_TLS_CERT needs NATS_TLS_KEY');
  if (Object.values(tls).some((v) => v !== undefined && v !== '')) {
    options.tls = Object.fromEntries(Object.entries(tls).filter(([, v]) => v !== undefined && v !== ''));
  }
  return options;
}
