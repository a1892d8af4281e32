/**
 * The dialog that asks for the API's bearer token when a request meets a 401 (token.ts). The token is
 * typed into a password field and kept in sessionStorage; requests waiting on it are sent again.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { watchTokenRequests, type TokenRequest } from '../token.js';

export function TokenPrompt() {
  const [request, setRequest] = useState<TokenRequest | null>(null);
  const [value, setValue] = useState('');
  const dialog = useRef<HTMLDialogElement>(null);

  useEffect(() => watchTokenRequests(setRequest), []);
  useEffect(() => {
    const element = dialog.current;
    if (element === null) return;
    if (request !== null && !element.open) {
      setValue('');
      element.showModal();
    } else if (request === null && element.open) element.close();
  }, [request]);

  return (
    <dialog
      ref={dialog}
      class="token-prompt"
      aria-labelledby="token-title"
      onCancel={(event) => {
        // Escape: the dialog closes only through cancel(), so requests waiting on it are told.
        event.preventDefault();
        request?.cancel();
      }}
    >
      <form
        method="dialog"
        onSubmit={(event) => {
          event.preventDefault();
          request?.submit(value);
        }}
      >
        <h2 id="token-title">API token</h2>
        <p>{request?.reason}</p>
        <p class="muted">
          It is the <code>WEIR_API_TOKEN</code> the API was started with. It stays in this tab only.
        </p>
        <label>
          Token
          <input type="password" autocomplete="off" required value={value} onInput={(event) => setValue(event.currentTarget.value)} />
        </label>
        <div class="actions">
          <button type="button" class="secondary" onClick={() => request?.cancel()}>
            Cancel
          </button>
          <button type="submit">Use token</button>
        </div>
      </form>
    </dialog>
  );
}
