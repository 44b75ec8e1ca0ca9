// Loaded only when the Exec tab opens, so xterm.js stays out of the main bundle.
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import '@xterm/xterm/css/xterm.css';

export { Terminal, FitAddon };
