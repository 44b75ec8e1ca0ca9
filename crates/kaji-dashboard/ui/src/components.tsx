import { ApiError, LiveState } from './api';
import { update } from './state';

export function LiveDot({ state, error }: { state: LiveState; error?: ApiError }) {
  const text = { loading: 'loading', live: 'live', reconnecting: 'reconnecting…', error: 'stopped' }[state];
  return (
    <span class={`live live-${state}`} data-testid="live" title={error?.message ?? text}>
      <span class="dot" /> {text}
    </span>
  );
}

export function Forbidden({ message, action }: { message: string; action?: string }) {
  return (
    <section class="forbidden" data-testid="forbidden" role="alert">
      <h1>Forbidden</h1>
      <p>{action ? `You may not ${action}.` : 'You may not see this.'} The API server said:</p>
      <blockquote>{message}</blockquote>
      <p class="muted">What you may do is decided by RBAC for your own identity; ask an administrator for a role binding.</p>
      {action && (
        <button onClick={() => update({ forbidden: null })} autofocus>
          Back
        </button>
      )}
    </section>
  );
}

/** An error in the page: Forbidden for 403, the server's message otherwise. */
export function ErrorBox({ error }: { error: ApiError | Error }) {
  if ((error as ApiError).code === 403) return <Forbidden message={error.message} />;
  if ((error as ApiError).code === 404) return <div class="error" role="alert">Not found: {error.message}</div>;
  return <div class="error" role="alert">{error.message}</div>;
}

