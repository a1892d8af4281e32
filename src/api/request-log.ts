/**
 * One debug line per HTTP request. Fastify's own request logging writes two lines per request
 * (received, completed) at info, which buried everything else `weir up` prints under a dashboard's
 * polling; a request is routine, so it is debug (WEIR_LOG_LEVEL=debug shows it).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** Why a request was refused (a client's mistake), for its one line. */
const rejections = new WeakMap<FastifyRequest, string>();

/** A client error's message goes into the request's line rather than a line of its own. */
export function noteRejection(request: FastifyRequest, message: string): void {
  rejections.set(request, message);
}

/** The line of one request, once it is answered (or, for an event stream, once the stream opens). */
export function logRequest(reply: FastifyReply, what = 'request'): void {
  const { request } = reply;
  const rejected = rejections.get(request);
  request.log.debug(
    { method: request.method, url: request.url, statusCode: reply.statusCode, responseTimeMs: Math.round(reply.elapsedTime * 10) / 10, ...(rejected === undefined ? {} : { rejected }) },
    what,
  );
}

/** Logs every reply Fastify sends; streams take their replies over (`hijack`) and call `logRequest` themselves. */
export function installRequestLog(app: FastifyInstance): void {
  app.addHook('onResponse', (_request, reply, done) => {
    logRequest(reply);
    done();
  });
}
