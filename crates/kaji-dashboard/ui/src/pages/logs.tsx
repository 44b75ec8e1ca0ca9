import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, query, readLines, request } from '../api';
import { ErrorBox } from '../components';

const MAX_LINES = 20000;

export function containerNames(pod: any): string[] {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? []), ...(pod.spec?.ephemeralContainers ?? [])].map((c: any) => c.name);
}

/**
 * An RFC 3339 timestamp as a key that sorts as time does (the fraction padded to nanoseconds:
 * containerd trims its trailing zeros); '' when the text is not a timestamp.
 */
export function timeKey(t: string): string {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(t);
  return m ? `${m[1]}.${(m[2] ?? '').padEnd(9, '0')}${m[3]}` : '';
}

/** A pod's logs: container picker, previous instance, follow (streamed), search. */
export function Logs({ pod }: { pod: any }) {
  const names = containerNames(pod);
  const [container, setContainer] = useState(pod.metadata.annotations?.['kubectl.kubernetes.io/default-container'] ?? pod.spec?.containers?.[0]?.name ?? names[0]);
  const [previous, setPrevious] = useState(false);
  const [follow, setFollow] = useState(true);
  const [search, setSearch] = useState('');
  const [lines, setLines] = useState<string[]>([]);
  const [state, setState] = useState<'loading' | 'streaming' | 'reconnecting' | 'ended' | 'error'>('loading');
  const [error, setError] = useState<ApiError | null>(null);
  const pre = useRef<HTMLPreElement>(null);
  const stick = useRef(true);

  useEffect(() => {
    const ac = new AbortController();
    const buf: string[] = [];
    let timer: number | undefined;
    const flush = () => {
      timer = undefined;
      setLines(buf.length > MAX_LINES ? buf.slice(-MAX_LINES) : [...buf]);
    };
    setLines([]);
    setError(null);
    setState('loading');
    const streaming = follow && !previous;
    const path = `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/log`;
    // Lines come with their timestamps so that a followed stream cut by the network (the browser
    // drops connections when the machine's interfaces change) can be opened again from its last
    // line (sinceTime), skipping the lines already shown; the timestamps are not displayed.
    let last = ''; // the newest line's timestamp, as a comparable key
    let lastTime: string | undefined;
    let atLast = 0; // lines shown that carry that timestamp
    (async () => {
      for (let attempt = 0; ; ) {
        const since = lastTime;
        let skip = atLast;
        try {
          const r = await request(path + query({ container, previous: previous || undefined, follow: streaming || undefined, timestamps: true, tailLines: since ? undefined : 5000, sinceTime: since }), { signal: ac.signal, headers: { Accept: '*/*' } });
          setState(streaming ? 'streaming' : 'loading');
          await readLines(r, (l) => {
            const sp = l.indexOf(' ');
            const key = timeKey(sp > 0 ? l.slice(0, sp) : '');
            if (since !== undefined && key !== '' && (key < last || (key === last && skip-- > 0))) return;
            if (key !== '' && key === last) atLast++;
            else if (key !== '') {
              last = key;
              lastTime = l.slice(0, sp);
              atLast = 1;
            }
            attempt = 0;
            buf.push(key === '' ? l : l.slice(sp + 1));
            if (buf.length > MAX_LINES * 2) buf.splice(0, buf.length - MAX_LINES);
            if (timer === undefined) timer = window.setTimeout(flush, 50);
          });
          flush();
          setState('ended');
          return;
        } catch (e) {
          if (ac.signal.aborted) return;
          const refused = e instanceof ApiError && e.code !== 0;
          if (streaming && !refused && attempt < 5) {
            attempt++;
            flush();
            setState('reconnecting');
            await new Promise((res) => setTimeout(res, 500 * attempt));
            if (ac.signal.aborted) return;
            continue;
          }
          setError(e instanceof ApiError ? e : new ApiError(0, { message: String(e) }));
          setState('error');
          return;
        }
      }
    })();
    return () => {
      ac.abort();
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [pod.metadata.uid, container, previous, follow]);

  useEffect(() => {
    if (stick.current && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [lines]);

  const q = search.toLowerCase();
  const shown = q ? lines.filter((l) => l.toLowerCase().includes(q)) : lines;
  return (
    <div class="logs">
      <div class="filters">
        <label>
          Container{' '}
          <select value={container} onChange={(e) => setContainer((e.target as HTMLSelectElement).value)} data-testid="container">
            {names.map((n) => (
              <option key={n}>{n}</option>
            ))}
          </select>
        </label>
        <label>
          <input type="checkbox" checked={previous} onChange={(e) => setPrevious((e.target as HTMLInputElement).checked)} /> previous
        </label>
        <label>
          <input type="checkbox" checked={follow} onChange={(e) => setFollow((e.target as HTMLInputElement).checked)} /> follow
        </label>
        <input type="search" placeholder="Search the log" aria-label="Search the log" value={search} onInput={(e) => setSearch((e.target as HTMLInputElement).value)} data-testid="log-search" />
        <span class="muted small">
          {shown.length}
          {q ? ` of ${lines.length}` : ''} lines · {state}
        </span>
      </div>
      {error ? (
        <ErrorBox error={error} />
      ) : (
        <pre
          class="log"
          ref={pre}
          data-testid="log"
          tabIndex={0}
          onScroll={(e) => {
            const el = e.target as HTMLElement;
            stick.current = el.scrollTop + el.clientHeight >= el.scrollHeight - 20;
          }}
        >
          {shown.join('\n')}
        </pre>
      )}
    </div>
  );
}
