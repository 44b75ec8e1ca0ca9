// An exec terminal: xterm.js over the API server's WebSocket exec (v4.channel.k8s.io). Each
// binary frame starts with its channel: 0 stdin, 1 stdout, 2 stderr, 3 error (a Status), 4 resize.
// Browsers cannot set headers on a WebSocket, so the token rides in a subprotocol, as upstream's
// base64url.bearer.authorization.k8s.io.
import { useEffect, useRef, useState } from 'preact/hooks';
import { base64url, query, token } from '../api';
import { containerNames } from './logs';

export function Exec({ pod }: { pod: any }) {
  const names = containerNames(pod).filter((n) => (pod.spec?.containers ?? []).some((c: any) => c.name === n));
  const [container, setContainer] = useState(names[0]);
  const [command, setCommand] = useState('sh');
  const [session, setSession] = useState(0);
  const [state, setState] = useState('connecting');
  const host = useRef<HTMLDivElement>(null);

  useEffect(() => {
    let ws: WebSocket | null = null;
    let disposed = false;
    let cleanup = () => {};
    setState('connecting');
    import('./terminal').then(({ Terminal, FitAddon }) => {
      if (disposed || !host.current) return;
      const dark = matchMedia('(prefers-color-scheme: dark)').matches;
      const term = new Terminal({ cursorBlink: true, fontSize: 13, theme: dark ? {} : { background: '#fafafa', foreground: '#222', cursor: '#222' }, convertEol: false });
      const fit = new FitAddon();
      term.loadAddon(fit);
      term.open(host.current);
      fit.fit();
      const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const cmd = command.trim().split(/\s+/).filter(Boolean);
      const q = query({ container, stdin: true, stdout: true, stderr: true, tty: true });
      const url = `${proto}//${location.host}/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/exec${q}&${cmd.map((c) => 'command=' + encodeURIComponent(c)).join('&')}`;
      ws = new WebSocket(url, ['v4.channel.k8s.io', 'base64url.bearer.authorization.k8s.io.' + base64url(token() ?? '')]);
      ws.binaryType = 'arraybuffer';
      const enc = new TextEncoder();
      const sendChan = (ch: number, data: Uint8Array) => {
        if (ws?.readyState !== WebSocket.OPEN) return;
        const b = new Uint8Array(data.length + 1);
        b[0] = ch;
        b.set(data, 1);
        ws.send(b);
      };
      const resize = () => sendChan(4, enc.encode(JSON.stringify({ Width: term.cols, Height: term.rows })));
      ws.onopen = () => {
        setState('connected');
        resize();
        term.focus();
      };
      ws.onmessage = (e) => {
        const d = typeof e.data === 'string' ? enc.encode(e.data) : new Uint8Array(e.data as ArrayBuffer);
        if (d.length === 0) return;
        const ch = d[0];
        const body = d.subarray(1);
        if (ch === 1 || ch === 2) term.write(body);
        else if (ch === 3 && body.length) {
          const text = new TextDecoder().decode(body);
          let msg = text;
          try {
            const st = JSON.parse(text);
            msg = st.status === 'Success' ? '' : st.message ?? text;
          } catch {}
          if (msg) term.write(`\r\n\x1b[31m${msg}\x1b[0m\r\n`);
        }
      };
      ws.onerror = () => setState('error');
      ws.onclose = (e) => {
        setState(e.code === 1000 || e.code === 1005 ? 'closed' : `closed (${e.code}${e.reason ? ': ' + e.reason : ''})`);
        term.write('\r\n\x1b[2m[session closed]\x1b[0m\r\n');
      };
      const sub = term.onData((s) => sendChan(0, enc.encode(s)));
      const ro = new ResizeObserver(() => {
        fit.fit();
        resize();
      });
      ro.observe(host.current);
      cleanup = () => {
        ro.disconnect();
        sub.dispose();
        ws?.close();
        term.dispose();
      };
    });
    return () => {
      disposed = true;
      cleanup();
    };
  }, [pod.metadata.uid, container, session]);

  return (
    <div class="exec">
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setSession((n) => n + 1);
        }}
      >
        <label>
          Container{' '}
          <select value={container} onChange={(e) => setContainer((e.target as HTMLSelectElement).value)}>
            {names.map((n) => (
              <option key={n}>{n}</option>
            ))}
          </select>
        </label>
        <label>
          Command <input value={command} onInput={(e) => setCommand((e.target as HTMLInputElement).value)} aria-label="Command" />
        </label>
        <button type="submit">Reconnect</button>
        <span class="muted small" data-testid="exec-state">
          {state}
        </span>
      </form>
      <div class="term" ref={host} data-testid="terminal" />
    </div>
  );
}
