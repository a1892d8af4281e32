/**
 * The banner under the header for failures no page shows itself (an action that failed, an uncaught
 * error): `showError(err)` from anywhere. Messages are the API's own (`{"error"}`), which name what went wrong.
 */
import { useEffect, useState } from 'preact/hooks';

type Listener = (messages: readonly string[]) => void;

const MAX_SHOWN = 3;
let messages: readonly string[] = [];
const listeners = new Set<Listener>();

function publish(next: readonly string[]): void {
  messages = next;
  for (const listener of listeners) listener(messages);
}

/** Shows `error`'s message in the banner (the same message twice shows once). */
export function showError(error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  if (messages.includes(message)) return;
  publish([...messages, message].slice(-MAX_SHOWN));
}

export function dismissErrors(): void {
  publish([]);
}

export function ErrorBanner() {
  const [shown, setShown] = useState(messages);
  useEffect(() => {
    listeners.add(setShown);
    setShown(messages);
    return () => void listeners.delete(setShown);
  }, []);
  if (shown.length === 0) return null;
  return (
    <div class="banner" role="alert">
      <ul>
        {shown.map((message) => (
          <li key={message}>{message}</li>
        ))}
      </ul>
      <button type="button" class="secondary" onClick={dismissErrors}>
        Dismiss
      </button>
    </div>
  );
}
