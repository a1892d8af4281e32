/**
 * An asynchronous resource opened on first use and shared by every later caller. A failed open is
 * forgotten, so the next call tries again: a store that could not be reached during a NATS outage must
 * not stay broken after NATS is back.
 */
export function openOnce<T>(open: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    if (pending === undefined) {
      const attempt = open();
      pending = attempt;
      attempt.catch(() => {
        if (pending === attempt) pending = undefined;
      });
    }
    return pending;
  };
}
