/**
 * The floor of bench:api: a bare Fastify app in its own process, one route answering a constant body.
 * It prints its port on stdout; the body comes from argv so it matches weir's answer byte for byte, and
 * the comparison is about the work behind the route, not the payload.
 */
import Fastify from 'fastify';

const body = process.argv[2] ?? '{}';
const app = Fastify({ logger: false });
app.get('/constant', (_request, reply) => {
  void reply.header('content-type', 'application/json; charset=utf-8').send(body);
});
const address = await app.listen({ host: '127.0.0.1', port: 0 });
console.log(new URL(address).port);
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
