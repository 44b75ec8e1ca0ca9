// Edit with server-side apply: the text is parsed here (a parse error is shown at its line),
// sent first with dryRun=All to show a diff of what would change, then applied for real as
// field manager "kaji-dashboard" (force: the viewer means to take the fields they edit).
import { useState } from 'preact/hooks';
import { parseDocument, stringify } from 'yaml';
import { ApiError, query, Resource, resPath, send, Status } from '../api';
import { update } from '../state';
import { cleaned } from './detail';

/** What the editor starts with: no status, no server-set metadata. */
function editable(o: any) {
  const metadata = { ...(o.metadata ?? {}) };
  for (const k of ['managedFields', 'resourceVersion', 'uid', 'creationTimestamp', 'generation', 'selfLink']) delete metadata[k];
  const { status: _, ...rest } = o;
  return { ...rest, metadata };
}

type DiffLine = { t: ' ' | '+' | '-'; s: string };

/** A line diff (longest common subsequence); objects here are a few hundred lines at most. */
export function diffLines(a: string[], b: string[]): DiffLine[] {
  const n = a.length,
    m = b.length;
  const dp: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) dp[i][j] = a[i] === b[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
  const out: DiffLine[] = [];
  let i = 0,
    j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) out.push({ t: ' ', s: a[i++] }), j++;
    else if (dp[i + 1][j] >= dp[i][j + 1]) out.push({ t: '-', s: a[i++] });
    else out.push({ t: '+', s: b[j++] });
  }
  while (i < n) out.push({ t: '-', s: a[i++] });
  while (j < m) out.push({ t: '+', s: b[j++] });
  return out;
}

function compact(d: DiffLine[]): (DiffLine | null)[] {
  // Keep 3 lines of context around changes; null marks an elision.
  const keep = d.map(() => false);
  d.forEach((l, i) => {
    if (l.t !== ' ') for (let k = Math.max(0, i - 3); k <= Math.min(d.length - 1, i + 3); k++) keep[k] = true;
  });
  const out: (DiffLine | null)[] = [];
  d.forEach((l, i) => {
    if (keep[i]) out.push(l);
    else if (out[out.length - 1] !== null) out.push(null);
  });
  return out;
}

export function EditYaml({ res, obj }: { res: Resource; obj: any }) {
  const [text, setText] = useState(() => stringify(editable(obj)));
  const [parseError, setParseError] = useState<{ line: number; message: string } | null>(null);
  const [status, setStatus] = useState<Status | null>(null);
  const [diff, setDiff] = useState<(DiffLine | null)[] | null>(null);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState('');
  const path = resPath(res, obj.metadata.namespace, obj.metadata.name);

  const parse = (): string | null => {
    const doc = parseDocument(text, { prettyErrors: true });
    if (doc.errors.length) {
      const e = doc.errors[0];
      setParseError({ line: (e.linePos?.[0]?.line ?? 0) as number, message: e.message });
      return null;
    }
    const v = doc.toJS();
    if (!v || typeof v !== 'object' || Array.isArray(v)) {
      setParseError({ line: 1, message: 'The text must be one YAML object (a mapping with apiVersion, kind and metadata).' });
      return null;
    }
    setParseError(null);
    return text;
  };

  const apply = async (dryRun: boolean) => {
    setDone('');
    setStatus(null);
    const body = parse();
    if (body === null) return;
    setBusy(true);
    try {
      const out = await send('PATCH', path + query({ fieldManager: 'kaji-dashboard', force: true, dryRun: dryRun ? 'All' : undefined }), body, 'application/apply-patch+yaml');
      if (dryRun) {
        const before = stringify(cleaned(obj)).split('\n');
        const after = stringify(cleaned(out)).split('\n');
        const ignore = /^\s*(resourceVersion|generation):/;
        const d = diffLines(before, after).filter((l) => l.t === ' ' || !ignore.test(l.s));
        setDiff(compact(d));
      } else {
        setDiff(null);
        setDone('Applied.');
      }
    } catch (e) {
      const err = e as ApiError;
      if (err.code === 403) update({ forbidden: { message: err.message, action: `change ${res.kind} ${obj.metadata.name}` } });
      else setStatus(err.status ?? { message: err.message });
    } finally {
      setBusy(false);
    }
  };

  const changed = diff?.some((l) => l && l.t !== ' ');
  return (
    <div class="edit">
      <div class="edit-main">
        <textarea
          class="code"
          data-testid="editor"
          spellcheck={false}
          value={text}
          aria-label="YAML"
          aria-invalid={!!parseError}
          onInput={(e) => {
            setText((e.target as HTMLTextAreaElement).value);
            setDiff(null);
            setDone('');
          }}
          onKeyDown={(e) => {
            if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') apply(!diff);
          }}
        />
        <div class="edit-buttons">
          <button onClick={() => apply(true)} disabled={busy} data-testid="review">
            Review changes (dry run)
          </button>
          <button onClick={() => apply(false)} disabled={busy || !diff || !changed} class="primary" data-testid="apply">
            Apply
          </button>
          <button class="link" onClick={() => (setText(stringify(editable(obj))), setDiff(null), setStatus(null), setParseError(null))}>
            Reset to current
          </button>
          {done && (
            <span class="ok-msg" role="status" data-testid="applied">
              {done}
            </span>
          )}
        </div>
      </div>
      <aside class="edit-side">
        {parseError && (
          <div class="error" role="alert" data-testid="parse-error">
            <strong>YAML does not parse{parseError.line ? ` (line ${parseError.line})` : ''}</strong>
            <pre>{parseError.message}</pre>
          </div>
        )}
        {status && (
          <div class="error" role="alert" data-testid="status-error">
            <strong>{status.reason ?? 'Error'}</strong>: {status.message}
            {(status.details?.causes ?? []).length > 0 && (
              <ul>
                {status.details!.causes!.map((c, i) => (
                  <li key={i}>
                    <code>{c.field}</code>: {c.message}
                  </li>
                ))}
              </ul>
            )}
          </div>
        )}
        {diff && (
          <div class="diff" data-testid="diff">
            <strong>{changed ? 'The server would change:' : 'No change.'}</strong>
            <pre>
              {diff.map((l, i) =>
                l === null ? (
                  <span key={i} class="muted">
                    {'⋯\n'}
                  </span>
                ) : (
                  <span key={i} class={l.t === '+' ? 'add' : l.t === '-' ? 'del' : ''}>
                    {l.t} {l.s}
                    {'\n'}
                  </span>
                ),
              )}
            </pre>
          </div>
        )}
        {!diff && !status && !parseError && <p class="muted">Edit, then review the dry-run diff before applying (Ctrl+Enter).</p>}
      </aside>
    </div>
  );
}
