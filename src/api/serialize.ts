/**
 * Serialising once what many requests send. A cached controller read hands every request it serves the
 * same reply object; the response built from it is derived once per reply (`derivedOnce`), frozen, and
 * its JSON kept beside it, so a dashboard's polls cost no JSON work until the reply changes. Anything
 * not frozen is serialised per request as usual.
 */
const json = new WeakMap<object, string>();

export function serializeResponse(data: unknown): string {
  if (typeof data !== 'object' || data === null || !Object.isFrozen(data)) return JSON.stringify(data);
  let text = json.get(data);
  if (text === undefined) {
    text = JSON.stringify(data);
    json.set(data, text);
  }
  return text;
}

/** `build`, computed once per source object; the result is frozen (shallowly: it is never changed). */
export function derivedOnce<S extends object, T extends object>(build: (source: S) => T): (source: S) => T {
  const built = new WeakMap<S, T>();
  return (source) => {
    let value = built.get(source);
    if (value === undefined) {
      value = Object.freeze(build(source));
      built.set(source, value);
    }
    return value;
  };
}
