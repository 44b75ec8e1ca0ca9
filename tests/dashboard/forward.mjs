// Runs inside the browser's own network namespace (see tests/dashboard.rs): listens on
// 127.0.0.1:$FORWARD_PORT there and passes each connection, byte for byte, to the Unix socket
// $FORWARD_SOCKET, which the test answers from the machine's namespace by connecting to the
// server's real port. Prints "listening" once ready; exits when its parent closes stdin.
import net from 'node:net';

const socket = process.env.FORWARD_SOCKET;
const port = Number(process.env.FORWARD_PORT);
const server = net.createServer((c) => {
  const u = net.connect({ path: socket });
  const close = () => {
    c.destroy();
    u.destroy();
  };
  c.on('error', close);
  u.on('error', close);
  c.pipe(u);
  u.pipe(c);
});
server.listen(port, '127.0.0.1', () => console.log('listening'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
