// CPU and memory over the last hour, from the metrics API (metrics.k8s.io, when the server has
// it): one poller for the whole page while something shows usage, samples kept in memory in a
// ring per node and per pod, so the charts survive moving between pages.
import { useEffect, useState } from 'preact/hooks';
import { getJSON } from './api';
import { quantity } from './units';

export type Sample = { t: number; cpu: number; mem: number }; // cores, bytes
const KEEP_MS = 60 * 60 * 1000;
const POLL_MS = 15000;

const series = new Map<string, Sample[]>(); // "node/NAME" or "pod/NS/NAME"
const listeners = new Set<() => void>();
let timer: number | undefined;
let available: boolean | null = null;

function record(key: string, t: number, cpu: number, mem: number) {
  const s = series.get(key) ?? [];
  if (s.length && s[s.length - 1].t === t) return;
  s.push({ t, cpu, mem });
  while (s.length && s[0].t < Date.now() - KEEP_MS) s.shift();
  series.set(key, s);
}

async function poll() {
  const [nodes, pods] = await Promise.all([
    getJSON('/apis/metrics.k8s.io/v1beta1/nodes').catch(() => null),
    getJSON('/apis/metrics.k8s.io/v1beta1/pods').catch(() => null),
  ]);
  available = !!(nodes || pods);
  for (const m of nodes?.items ?? []) record(`node/${m.metadata.name}`, Date.parse(m.timestamp) || Date.now(), quantity(m.usage?.cpu), quantity(m.usage?.memory));
  for (const m of pods?.items ?? []) {
    let cpu = 0;
    let mem = 0;
    for (const c of m.containers ?? []) (cpu += quantity(c.usage?.cpu)), (mem += quantity(c.usage?.memory));
    record(`pod/${m.metadata.namespace}/${m.metadata.name}`, Date.parse(m.timestamp) || Date.now(), cpu, mem);
  }
  for (const l of listeners) l();
}

/** The samples of `key` (re-rendered as new ones arrive); null when there is no metrics API. */
export function useUsage(key: string): Sample[] | null {
  const [, tick] = useState(0);
  useEffect(() => {
    const l = () => tick((n) => n + 1);
    listeners.add(l);
    if (listeners.size === 1) {
      poll();
      timer = window.setInterval(poll, POLL_MS);
    }
    return () => {
      listeners.delete(l);
      if (listeners.size === 0) clearInterval(timer);
    };
  }, []);
  if (available === false) return null;
  return series.get(key) ?? [];
}
