//! The WebSocket tunnel of port-forward (`SPDY/3.1+portforward.k8s.io`, kubectl 1.31+): the
//! client speaks SPDY inside binary WebSocket messages; the API server ends the WebSocket and
//! carries the SPDY bytes to the kubelet over a plain SPDY upgrade, as upstream's
//! `apiserver/pkg/util/proxy/streamtunnel.go` does. Only the framing (RFC 6455) is done here.

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The subprotocol a tunnelling client offers.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Largest client message accepted (client-go writes at most 32 KiB at a time).
const MAX_MESSAGE: u64 = 16 << 20;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.trim().as_bytes());
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

/// One server frame (never masked).
pub(super) fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Reads one frame: (opcode, unmasked payload).
pub(super) async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await?;
    let opcode = head[0] & 0x0f;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => u64::from(r.read_u16().await?),
        127 => r.read_u64().await?,
        n => u64::from(n),
    };
    if len > MAX_MESSAGE {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "WebSocket frame too large"));
    }
    let mut mask = [0u8; 4];
    if masked {
        r.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok((opcode, payload))
}

/// Carries binary WebSocket messages from `ws` to `raw` and `raw`'s bytes back as binary
/// messages, until either side closes.
pub async fn splice<W, R>(ws: W, raw: R)
where
    W: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut ws_read, ws_write) = tokio::io::split(ws);
    let (mut raw_read, mut raw_write) = tokio::io::split(raw);
    let ws_write = std::sync::Arc::new(tokio::sync::Mutex::new(ws_write));
    let to_client = {
        let ws_write = ws_write.clone();
        async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = raw_read.read(&mut buf).await.unwrap_or(0);
                let mut w = ws_write.lock().await;
                if n == 0 {
                    let _ = w.write_all(&frame(0x8, &1000u16.to_be_bytes())).await;
                    let _ = w.shutdown().await;
                    return;
                }
                if w.write_all(&frame(0x2, &buf[..n])).await.is_err() || w.flush().await.is_err() {
                    return;
                }
            }
        }
    };
    let to_kubelet = async move {
        loop {
            match read_frame(&mut ws_read).await {
                Ok((0x0..=0x2, payload)) => {
                    if raw_write.write_all(&payload).await.is_err() || raw_write.flush().await.is_err() {
                        break;
                    }
                }
                Ok((0x9, payload)) => {
                    let mut w = ws_write.lock().await;
                    let _ = w.write_all(&frame(0xA, &payload)).await;
                    let _ = w.flush().await;
                }
                Ok((0xA, _)) => {}
                Ok(_) | Err(_) => break,
            }
        }
        let _ = raw_write.shutdown().await;
    };
    // Either direction ending ends the tunnel (a closed WebSocket cannot be half open).
    tokio::select! {
        () = to_client => {}
        () = to_kubelet => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[tokio::test]
    async fn reads_masked_frames() {
        let payload = b"hello";
        let mask = [1u8, 2, 3, 4];
        let mut bytes = vec![0x82, 0x80 | payload.len() as u8];
        bytes.extend_from_slice(&mask);
        bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let (op, data) = read_frame(&mut bytes.as_slice()).await.unwrap();
        assert_eq!((op, data.as_slice()), (2, &payload[..]));
        let long = frame(2, &[7u8; 300]);
        assert_eq!(&long[..4], &[0x82, 126, 1, 44]);
    }
}
