import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, query, readLines, request } from '../api';
import { ErrorBox } from '../components';

const MAX_LINES = 20000;

export function containerNames(pod: any): string[] {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? []), ...(pod.spec?.ephemeralContainers ?? [])].map((c: any) => c.name);
}

/** A pod's logs: container picker, previous instance, follow (streamed), search. */
export function Logs({ pod }: { pod: any }) {
  const names = containerNames(pod);
  const [container, setContainer] = useState(pod.metadata.annotations?.['kubectl.kubernetes.io/default-container'] ?? pod.spec?.containers?.[0]?.name ?? names[0]);
  const [previous, setPrevious] = useState(false);
  const [follow, setFollow] = useState(true);
  const [search, setSearch] = useState('');
  const [lines, setLines] = useState<string[]>([]);
  const [state, setState] = useState<'loading' | 'streaming' | 'ended' | 'error'>('loading');
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
    const url = `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/log` + query({ container, previous: previous || undefined, follow: follow && !previous ? true : undefined, tailLines: 5000 });
    request(url, { signal: ac.signal, headers: { Accept: '*/*' } })
      .then((r) => {
        setState(follow && !previous ? 'streaming' : 'loading');
        return readLines(r, (l) => {
          buf.push(l);
          if (buf.length > MAX_LINES * 2) buf.splice(0, buf.length - MAX_LINES);
          if (timer === undefined) timer = window.setTimeout(flush, 50);
        });
      })
      .then(() => {
        flush();
        setState('ended');
      })
      .catch((e) => {
        if (ac.signal.aborted) return;
        setError(e instanceof ApiError ? e : new ApiError(0, { message: String(e) }));
        setState('error');
      });
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
