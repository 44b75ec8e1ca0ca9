import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

// The app is served under /dashboard/ by `kaji server` and `kaji dashboard --listen`; relative
// asset URLs work under either. `KAJI_API` proxies /api and /apis to a running server in dev.
export default defineConfig({
  base: './',
  plugins: [preact()],
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 600 },
  server: {
    proxy: process.env.KAJI_API
      ? {
          '/api': { target: process.env.KAJI_API, secure: false, ws: true, changeOrigin: true },
          '/apis': { target: process.env.KAJI_API, secure: false, changeOrigin: true },
        }
      : undefined,
  },
  preview: {
    proxy: process.env.KAJI_API
      ? {
          '/api': { target: process.env.KAJI_API, secure: false, ws: true, changeOrigin: true },
          '/apis': { target: process.env.KAJI_API, secure: false, changeOrigin: true },
        }
      : undefined,
  },
});
