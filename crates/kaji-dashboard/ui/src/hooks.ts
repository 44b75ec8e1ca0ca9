import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, discover, ListWatch, LiveState, Resource } from './api';

/** A live list: re-renders as watch events arrive (batched). */
export function useListWatch(path: string | null, params: Record<string, string | undefined> = {}, accept?: string, count = false) {
  const [, tick] = useState(0);
  const [state, setState] = useState<{ s: LiveState; err?: ApiError }>({ s: 'loading' });
  const lw = useRef<ListWatch | null>(null);
  const key = path + JSON.stringify(params) + accept + count;
  useEffect(() => {
    if (!path) return;
    setState({ s: 'loading' });
    const w = new ListWatch({
      path,
      params,
      accept,
      count,
      pageSize: count ? 1 : undefined,
      onChange: () => tick((n) => n + 1),
      onState: (s, err) => setState({ s, err }),
    });
    lw.current = w;
    return () => w.stop();
  }, [key]);
  const w = lw.current;
  return {
    items: w && path ? [...w.items.values()] : [],
    count: w && path ? w.count : 0,
    columns: w?.columns ?? [],
    complete: w?.complete ?? false,
    state: state.s,
    error: state.err,
  };
}

export function useDiscovery() {
  const [res, set] = useState<Resource[] | null>(null);
  const [err, setErr] = useState<ApiError | null>(null);
  useEffect(() => {
    // A dropped connection (server restarting, network change) is retried; other errors stay.
    let stop = false;
    let delay = 500;
    const attempt = () =>
      discover(true).then(
        (r) => !stop && (set(r), setErr(null)),
        (e: ApiError) => {
          if (stop) return;
          setErr(e);
          if (e.code === 0) setTimeout(attempt, (delay = Math.min(delay * 2, 10000)));
        },
      );
    discover().then(set, () => attempt());
    return () => void (stop = true);
  }, []);
  return { resources: res, error: err };
}

/** Re-renders every `ms` (for ages). */
export function useTicker(ms: number) {
  const [, set] = useState(0);
  useEffect(() => {
    const t = setInterval(() => set((n) => n + 1), ms);
    return () => clearInterval(t);
  }, [ms]);
}
