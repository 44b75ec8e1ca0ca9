// Global state shared by the pages: the hash route, the namespace, the login message and the
// Forbidden page. A tiny observable instead of a state library.
import { useEffect, useState } from 'preact/hooks';

type Listener = () => void;
const listeners = new Set<Listener>();
function emit() {
  for (const l of listeners) l();
}

export const store = {
  namespace: sessionStorage.getItem('kaji-dashboard-ns') ?? 'default',
  loginMessage: sessionStorage.getItem('kaji-dashboard-login-message') ?? '',
  forbidden: null as null | { message: string; action: string },
  user: '',
};

export function update(patch: Partial<typeof store>) {
  Object.assign(store, patch);
  if (patch.namespace !== undefined) sessionStorage.setItem('kaji-dashboard-ns', patch.namespace);
  if (patch.loginMessage !== undefined) sessionStorage.setItem('kaji-dashboard-login-message', patch.loginMessage);
  emit();
}

export function useStore() {
  const [, set] = useState(0);
  useEffect(() => {
    const l = () => set((n) => n + 1);
    listeners.add(l);
    return () => void listeners.delete(l);
  }, []);
  return store;
}

export type Route = { path: string[]; params: URLSearchParams };

export function parseRoute(): Route {
  const h = location.hash.replace(/^#\/?/, '');
  const [p, q] = h.split('?');
  return { path: p.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(q ?? '') };
}

export function useRoute(): Route {
  const [r, set] = useState(parseRoute);
  useEffect(() => {
    const l = () => set(parseRoute());
    addEventListener('hashchange', l);
    return () => removeEventListener('hashchange', l);
  }, []);
  return r;
}

export function go(path: string) {
  location.hash = '#/' + path.replace(/^\//, '');
}

/** The route of a list page (`core` stands for the legacy group). */
export function listHref(group: string, version: string, plural: string) {
  return `#/r/${group || 'core'}/${version}/${plural}`;
}

export function objHref(group: string, version: string, plural: string, ns: string | undefined, name: string, tab?: string) {
  return `${listHref(group, version, plural)}/${encodeURIComponent(ns || '_')}/${encodeURIComponent(name)}${tab ? '/' + tab : ''}`;
}
