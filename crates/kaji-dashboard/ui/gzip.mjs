// After `vite build`: a gzip copy beside each asset (x.js.gz), which the server sends to browsers
// that accept gzip (crates/kaji-dashboard/src/assets.rs). Deterministic bytes (no mtime), so a
// rebuild from the same sources changes nothing in git.
import { readdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync, constants } from 'node:zlib';

function walk(dir) {
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) walk(p);
    else if (/\.(js|css|html|svg)$/.test(f)) {
      const raw = readFileSync(p);
      const gz = gzipSync(raw, { level: constants.Z_BEST_COMPRESSION });
      if (gz.length < raw.length * 0.9) writeFileSync(p + '.gz', gz);
    }
  }
}
walk('dist');
