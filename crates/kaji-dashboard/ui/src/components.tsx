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


/** A line of samples over the last hour (time on x, 0..max on y), with the latest value. */
export function Chart({ label, points, max, format }: { label: string; points: { t: number; v: number }[]; max?: number; format: (v: number) => string }) {
  const now = Date.now();
  const from = now - 60 * 60 * 1000;
  const top = Math.max(max ?? 0, ...points.map((p) => p.v * 1.2), 1e-9);
  const xy = points.map((p) => `${(((p.t - from) / (now - from)) * 240).toFixed(1)},${(40 - (p.v / top) * 38).toFixed(1)}`).join(' ');
  const last = points[points.length - 1];
  return (
    <figure class="chart" data-testid="chart" data-points={points.length} aria-label={`${label} over the last hour`}>
      <figcaption>
        {label} <strong>{last ? format(last.v) : '–'}</strong>
        {max ? <span class="muted"> of {format(max)}</span> : null}
      </figcaption>
      <svg viewBox="0 0 240 40" preserveAspectRatio="none" role="img">
        {points.length > 1 ? <polyline points={xy} /> : points.length === 1 ? <circle cx={237} cy={40 - (points[0].v / top) * 38} r={2} /> : null}
      </svg>
    </figure>
  );
}
