//! Exec and attach over a `v5.channel.k8s.io` WebSocket (kubectl 1.30+), translated to SPDY/3.1
//! towards the kubelet: upstream's StreamTranslatorProxy (KEP-4006,
//! `apiserver/pkg/util/proxy/streamtranslator.go`). The runtime's streaming server (containerd)
//! knows SPDY and the WebSocket protocols up to v4, so the API server ends the client's
//! WebSocket and opens SPDY streams (`v4.channel.k8s.io`) to the kubelet itself.
//!
//! The WebSocket side: every binary message starts with its channel, 0 stdin, 1 stdout,
//! 2 stderr, 3 error (the exit status, a JSON metav1.Status), 4 resize (JSON terminal sizes);
//! v5 adds 255, the close signal: `[255, N]` means the client is done writing channel N (stdin's
//! end, which becomes a FIN on the SPDY stdin stream). The SPDY side: one stream per channel,
//! opened in client-go's order (error, stdin, stdout, stderr, resize; only those asked for) with
//! a `streamtype` header. Output goes back as it comes; when the server has closed all the
//! streams it writes (it resets them, then sends GOAWAY, once the command has ended), the status
//! goes out on channel 3 (Success when the server wrote none) and the WebSocket is closed with
//! 1000, which client-go's readers take as the end of every stream.

use super::spdy::{self, Frame};
use crate::proxy::wstunnel::{frame, read_frame};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Mutex, mpsc};

/// The subprotocol translated here.
pub const PROTOCOL: &str = "v5.channel.k8s.io";

/// What the kubelet is asked for, in the stream protocol's terms.
const KUBELET_PROTOCOL: &str = "v4.channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// How long the client gets to answer the closing handshake before the connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Largest DATA frame sent to the kubelet (client-go writes 32 KiB at most).
const CHUNK: usize = 64 * 1024;

/// The streams of a session (`tty` merges stderr into stdout: no stderr then).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Streams {
    /// The SPDY streams to open, in order (ids 1, 3, 5, ...): (channel, streamtype).
    fn spdy_streams(self) -> Vec<(u8, &'static str)> {
        [(true, ERROR, "error"), (self.stdin, STDIN, "stdin"), (self.stdout, STDOUT, "stdout"), (self.stderr && !self.tty, STDERR, "stderr"), (self.tty, RESIZE, "resize")]
            .into_iter()
            .filter(|(on, _, _)| *on)
            .map(|(_, ch, ty)| (ch, ty))
            .collect()
    }
}

/// The headers of the kubelet-side upgrade request.
pub fn kubelet_upgrade_headers() -> [(&'static str, &'static str); 3] {
    [("connection", "Upgrade"), ("upgrade", "SPDY/3.1"), ("x-stream-protocol-version", KUBELET_PROTOCOL)]
}

/// One client message, by its first byte.
#[derive(Debug, PartialEq, Eq)]
enum Message<'a> {
    Data(u8, &'a [u8]),
    /// The client is done writing this channel.
    Close(u8),
    Empty,
    Invalid,
}

fn parse(payload: &[u8]) -> Message<'_> {
    match payload {
        [] => Message::Empty,
        [CLOSE, ch] => Message::Close(*ch),
        [CLOSE, ..] => Message::Invalid,
        [ch, rest @ ..] => Message::Data(*ch, rest),
    }
}

/// The client's side of the WebSocket, for writing; `closed` once the close frame went out.
struct Client<W> {
    io: W,
    closed: bool,
}

impl<W: AsyncWrite + Unpin> Client<W> {
    async fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        if self.closed {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        self.io.write_all(&frame(opcode, payload)).await?;
        self.io.flush().await
    }

    async fn message(&mut self, channel: u8, data: &[u8]) -> std::io::Result<()> {
        let mut payload = Vec::with_capacity(data.len() + 1);
        payload.push(channel);
        payload.extend_from_slice(data);
        self.send(0x2, &payload).await
    }

    async fn close(&mut self, code: &[u8]) {
        if !self.closed {
            let _ = self.send(0x8, code).await;
            self.closed = true;
        }
    }
}

/// A metav1.Status for the error channel.
fn status(failure: Option<&str>) -> Vec<u8> {
    let v = match failure {
        None => serde_json::json!({"metadata": {}, "status": "Success"}),
        Some(msg) => serde_json::json!({
            "metadata": {}, "status": "Failure", "message": msg, "reason": "InternalError",
            "details": {"causes": [{"message": msg}]}, "code": 500,
        }),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Runs a session between the client's upgraded WebSocket and the kubelet's upgraded SPDY
/// connection, until the command's streams end or either side goes away.
pub async fn run<W, K>(ws: W, kubelet: K, streams: Streams)
where
    W: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    K: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ws_read, ws_write) = tokio::io::split(ws);
    let client = Arc::new(Mutex::new(Client { io: ws_write, closed: false }));
    let (kubelet_read, mut kubelet_write) = tokio::io::split(kubelet);
    // Channel number -> SPDY stream id.
    let mut ids = [None::<u32>; 5];
    let mut headers = spdy::HeaderWriter::default();
    let mut hello = Vec::new();
    for (n, (ch, kind)) in streams.spdy_streams().into_iter().enumerate() {
        let id = 2 * n as u32 + 1;
        ids[usize::from(ch)] = Some(id);
        hello.extend(headers.syn_stream(id, &[("streamtype", kind)]));
    }
    if let Err(e) = async { kubelet_write.write_all(&hello).await?; kubelet_write.flush().await }.await {
        let mut c = client.lock().await;
        let _ = c.message(ERROR, &status(Some(&format!("opening streams to the kubelet: {e}")))).await;
        c.close(&1000u16.to_be_bytes()).await;
        return;
    }
    // One writer towards the kubelet: stdin and resizes from the client, answers to pings.
    let (to_kubelet, mut queue) = mpsc::channel::<Vec<u8>>(16);
    let mut writer = tokio::spawn(async move {
        while let Some(bytes) = queue.recv().await {
            if kubelet_write.write_all(&bytes).await.is_err() || kubelet_write.flush().await.is_err() {
                return;
            }
        }
        let _ = kubelet_write.shutdown().await;
    });
    // As upstream, an empty message on the first channel the client reads says the session is up.
    let first = [STDOUT, STDERR].into_iter().find(|&ch| ids[usize::from(ch)].is_some()).unwrap_or(ERROR);
    if client.lock().await.message(first, &[]).await.is_err() {
        return;
    }
    let ended = {
        let mut output = std::pin::pin!(kubelet_to_client(kubelet_read, client.clone(), to_kubelet.clone(), ids));
        let mut input = std::pin::pin!(client_to_kubelet(ws_read, client, to_kubelet.clone(), ids));
        tokio::select! {
            ended = &mut output => {
                if ended {
                    // Wait for the client's answer to the close frame (or its end), so that
                    // closing the connection does not reset it while the client still reads.
                    let _ = tokio::time::timeout(CLOSE_GRACE, input).await;
                }
                ended
            }
            () = &mut input => false,
        }
    };
    if !ended {
        // The client left first: leave as an SPDY client closing its connection does (streams
        // reset, then GOAWAY), which ends the server's side of the session too. A kubelet that
        // reads nothing more (its runtime stuck on stdin nobody consumes) is not waited for.
        let mut opened: Vec<u32> = ids.iter().flatten().copied().collect();
        opened.sort_unstable();
        let mut bye: Vec<u8> = opened.into_iter().flat_map(|id| spdy::rst_stream(id, spdy::CANCEL)).collect();
        bye.extend(spdy::goaway());
        let _ = to_kubelet.try_send(bye);
    }
    drop(to_kubelet);
    if tokio::time::timeout(CLOSE_GRACE, &mut writer).await.is_err() {
        writer.abort();
    }
}

/// Carries stdout, stderr and the error stream to the client; ends with the status and the
/// close frame (true), or when the client cannot be written to (false).
async fn kubelet_to_client<R, W>(kubelet: R, client: Arc<Mutex<Client<W>>>, to_kubelet: mpsc::Sender<Vec<u8>>, ids: [Option<u32>; 5]) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut r = BufReader::new(kubelet);
    let channel_of = |stream: u32| [STDOUT, STDERR, ERROR].into_iter().find(|&ch| ids[usize::from(ch)] == Some(stream));
    // The streams the server writes and has not closed yet.
    let mut open: Vec<u32> = [STDOUT, STDERR, ERROR].into_iter().filter_map(|ch| ids[usize::from(ch)]).collect();
    let mut status_sent = false;
    let failure = loop {
        let frame = match spdy::read_frame(&mut r).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break None,
            Err(e) => break Some(format!("reading from the kubelet: {e}")),
        };
        match frame {
            Frame::Data { stream, fin, data } => {
                if let Some(ch) = channel_of(stream)
                    && !data.is_empty()
                {
                    status_sent |= ch == ERROR;
                    if client.lock().await.message(ch, &data).await.is_err() {
                        return false;
                    }
                }
                if fin {
                    open.retain(|&s| s != stream);
                }
            }
            Frame::Reply { stream, fin: true } | Frame::Reset { stream, .. } => open.retain(|&s| s != stream),
            Frame::Ping(id) => {
                let _ = to_kubelet.try_send(spdy::ping(id));
            }
            Frame::GoAway { .. } => break None,
            Frame::Reply { .. } | Frame::Other(_) => {}
        }
        if open.is_empty() {
            break None;
        }
    };
    let mut c = client.lock().await;
    if !status_sent && c.message(ERROR, &status(failure.as_deref())).await.is_err() {
        return false;
    }
    c.close(&1000u16.to_be_bytes()).await;
    true
}

/// Carries stdin, its end and terminal resizes to the kubelet; answers pings and the client's
/// close frame.
async fn client_to_kubelet<R, W>(mut ws: R, client: Arc<Mutex<Client<W>>>, to_kubelet: mpsc::Sender<Vec<u8>>, ids: [Option<u32>; 5])
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // The streams the client writes (stdin, resize) and has not closed yet.
    let mut writable = ids;
    for ch in [STDOUT, STDERR, ERROR] {
        writable[usize::from(ch)] = None;
    }
    // The channel of the message being read (continuation frames carry no channel byte).
    let mut current = None::<u8>;
    loop {
        let Ok((opcode, payload)) = read_frame(&mut ws).await else { return };
        let (ch, data) = match opcode {
            0x1 | 0x2 => match parse(&payload) {
                Message::Data(ch, data) => {
                    current = Some(ch);
                    (ch, data)
                }
                Message::Close(ch) => {
                    current = None;
                    if let Some(stream) = writable.get_mut(usize::from(ch)).and_then(Option::take) {
                        let _ = to_kubelet.send(spdy::data(stream, &[], true)).await;
                    }
                    continue;
                }
                Message::Empty => {
                    current = None;
                    continue;
                }
                Message::Invalid => {
                    tracing::debug!("close signal without a single channel");
                    return;
                }
            },
            0x0 => match current {
                Some(ch) => (ch, payload.as_slice()),
                None => continue,
            },
            0x8 => {
                // Echo the status code; the session is over.
                client.lock().await.close(payload.get(..2).unwrap_or(&[])).await;
                return;
            }
            0x9 => {
                let _ = client.lock().await.send(0xA, &payload).await;
                continue;
            }
            0xA => continue,
            _ => return,
        };
        if let Some(stream) = writable.get(usize::from(ch)).copied().flatten() {
            for chunk in data.chunks(CHUNK) {
                let _ = to_kubelet.send(spdy::data(stream, chunk, false)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, duplex};

    #[test]
    fn parses_channel_messages() {
        assert_eq!(parse(&[0, b'h', b'i']), Message::Data(0, b"hi"));
        assert_eq!(parse(&[4, b'{']), Message::Data(4, b"{"));
        assert_eq!(parse(&[255, 0]), Message::Close(0));
        assert_eq!(parse(&[255]), Message::Invalid);
        assert_eq!(parse(&[255, 0, 1]), Message::Invalid);
        assert_eq!(parse(&[]), Message::Empty);
    }

    #[test]
    fn opens_streams_in_client_gos_order() {
        let all = Streams { stdin: true, stdout: true, stderr: true, tty: false };
        assert_eq!(all.spdy_streams(), [(ERROR, "error"), (STDIN, "stdin"), (STDOUT, "stdout"), (STDERR, "stderr")]);
        let tty = Streams { stdin: true, stdout: true, stderr: true, tty: true };
        assert_eq!(tty.spdy_streams(), [(ERROR, "error"), (STDIN, "stdin"), (STDOUT, "stdout"), (RESIZE, "resize")]);
        let out = Streams { stdout: true, ..Streams::default() };
        assert_eq!(out.spdy_streams(), [(ERROR, "error"), (STDOUT, "stdout")]);
    }

    #[test]
    fn statuses() {
        let ok: serde_json::Value = serde_json::from_slice(&status(None)).unwrap();
        assert_eq!(ok["status"], "Success");
        let bad: serde_json::Value = serde_json::from_slice(&status(Some("boom"))).unwrap();
        assert_eq!((bad["status"].as_str(), bad["message"].as_str(), bad["reason"].as_str()), (Some("Failure"), Some("boom"), Some("InternalError")));
    }

    /// A masked client frame.
    fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [9u8, 8, 7, 6];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode, 0x80 | payload.len() as u8];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Reads one server frame: (opcode, payload).
    async fn server_frame<R: AsyncRead + Unpin>(r: &mut R) -> (u8, Vec<u8>) {
        read_frame(r).await.expect("a WebSocket frame")
    }

    #[tokio::test]
    async fn translates_a_session() {
        let (ws, mut client) = duplex(1 << 16);
        let (kubelet, mut server) = duplex(1 << 16);
        let session = tokio::spawn(run(ws, kubelet, Streams { stdin: true, stdout: true, stderr: true, tty: false }));
        // The kubelet sees the four streams opened, in order.
        let mut ids = Vec::new();
        let mut expect_header = true;
        for _ in 0..4 {
            let mut head = [0u8; 8];
            server.read_exact(&mut head).await.unwrap();
            assert_eq!(&head[..4], &[0x80, 3, 0, 1]);
            let mut payload = vec![0u8; (u32::from_be_bytes(head[4..8].try_into().unwrap()) & 0xff_ffff) as usize];
            server.read_exact(&mut payload).await.unwrap();
            ids.push(u32::from_be_bytes(payload[..4].try_into().unwrap()));
            assert_eq!(payload[10..12] == [0x78, 0x01], expect_header);
            expect_header = false;
        }
        assert_eq!(ids, [1, 3, 5, 7]);
        // The client is told the session is up (an empty stdout message).
        assert_eq!(server_frame(&mut client).await, (0x2, vec![STDOUT]));
        // stdin, in a fragmented message, then its end.
        client.write_all(&client_frame(0x2, false, &[STDIN, b'a'])).await.unwrap();
        client.write_all(&client_frame(0x9, true, b"hb")).await.unwrap();
        client.write_all(&client_frame(0x0, true, b"b")).await.unwrap();
        client.write_all(&client_frame(0x2, true, &[CLOSE, STDIN])).await.unwrap();
        // Data for a channel the client cannot write is dropped.
        client.write_all(&client_frame(0x2, true, &[STDOUT, b'x'])).await.unwrap();
        assert_eq!(server_frame(&mut client).await, (0xA, b"hb".to_vec()));
        for want in [spdy::data(3, b"a", false), spdy::data(3, b"b", false), spdy::data(3, b"", true)] {
            let mut got = vec![0u8; want.len()];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(got, want);
        }
        // Output, a ping, then the exit status and the server's teardown.
        server.write_all(&spdy::data(5, b"out\n", false)).await.unwrap();
        server.write_all(&spdy::data(7, b"err\n", false)).await.unwrap();
        server.write_all(&spdy::ping(2)).await.unwrap();
        let exit = br#"{"metadata":{},"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        server.write_all(&spdy::data(1, exit, false)).await.unwrap();
        for s in [1u8, 5, 7] {
            server.write_all(&[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, s, 0, 0, 0, 5]).await.unwrap();
        }
        let mut pong = [0u8; 12];
        server.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong.to_vec(), spdy::ping(2));
        assert_eq!(server_frame(&mut client).await, (0x2, [&[STDOUT][..], b"out\n"].concat()));
        assert_eq!(server_frame(&mut client).await, (0x2, [&[STDERR][..], b"err\n"].concat()));
        assert_eq!(server_frame(&mut client).await, (0x2, [&[ERROR][..], exit].concat()));
        assert_eq!(server_frame(&mut client).await, (0x8, 1000u16.to_be_bytes().to_vec()));
        // The client answers the close; the session ends.
        client.write_all(&client_frame(0x8, true, &1000u16.to_be_bytes())).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), session).await.expect("the session ends").unwrap();
    }

    #[tokio::test]
    async fn success_when_the_server_says_nothing() {
        let (ws, mut client) = duplex(1 << 16);
        let (kubelet, server) = duplex(1 << 16);
        let session = tokio::spawn(run(ws, kubelet, Streams { stdout: true, tty: true, ..Streams::default() }));
        assert_eq!(server_frame(&mut client).await, (0x2, vec![STDOUT]));
        drop(server);
        let (op, payload) = server_frame(&mut client).await;
        assert_eq!((op, payload[0]), (0x2, ERROR));
        let st: serde_json::Value = serde_json::from_slice(&payload[1..]).unwrap();
        assert_eq!(st["status"], "Success");
        assert_eq!(server_frame(&mut client).await.0, 0x8);
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), session).await.expect("the session ends").unwrap();
    }

    #[tokio::test]
    async fn a_client_that_leaves_ends_the_session() {
        let (ws, mut client) = duplex(1 << 16);
        let (kubelet, mut server) = duplex(1 << 16);
        let session = tokio::spawn(run(ws, kubelet, Streams { stdout: true, stderr: true, ..Streams::default() }));
        assert_eq!(server_frame(&mut client).await, (0x2, vec![STDOUT]));
        client.write_all(&client_frame(0x8, true, &1001u16.to_be_bytes())).await.unwrap();
        assert_eq!(server_frame(&mut client).await, (0x8, 1001u16.to_be_bytes().to_vec()));
        tokio::time::timeout(Duration::from_secs(5), session).await.expect("the session ends").unwrap();
        // The kubelet is told the streams are over, then its connection is closed.
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), server.read_to_end(&mut rest)).await.expect("closed").unwrap();
        let bye: Vec<u8> = [1u32, 3, 5].iter().flat_map(|&id| spdy::rst_stream(id, spdy::CANCEL)).chain(spdy::goaway()).collect();
        assert!(rest.ends_with(&bye), "{rest:?}");
    }
}
