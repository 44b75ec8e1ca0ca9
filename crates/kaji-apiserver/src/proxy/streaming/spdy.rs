//! The client side of SPDY/3.1 as the kubelet's (and the runtime's) streaming server speaks it
//! (Go's `moby/spdystream`): just what an exec or attach session needs. Frames are read whole
//! (8-byte header, then the payload); the header blocks the server sends (SYN_REPLY, HEADERS)
//! are skipped by their length, never decompressed.
//!
//! The header blocks a client sends are one zlib stream over the whole connection. The stream
//! written here starts with a zlib header without a preset dictionary (Go's reader then uses
//! none) and carries each block as an uncompressed deflate block followed by an empty one (the
//! "sync flush" marker, as Go's writer ends every block): the decoder on the other side only
//! hands the bytes of a stored block over when the next block starts, and the framer insists
//! that a frame's compressed bytes are all consumed by the block they carry
//! (`WrongCompressedPayloadSize`), which the marker also ensures.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Control frame types (SPDY/3 section 2.6).
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;

/// RST_STREAM's status for a stream the client no longer wants.
pub const CANCEL: u32 = 5;

/// The FIN flag, on DATA and on SYN_STREAM / SYN_REPLY / HEADERS frames.
const FLAG_FIN: u8 = 0x01;

/// The largest payload a frame can carry (24-bit length).
pub const MAX_PAYLOAD: usize = 0x00ff_ffff;

/// A zlib stream header: deflate with a 32 KiB window, no preset dictionary, fastest level.
const ZLIB_HEADER: [u8; 2] = [0x78, 0x01];

/// An empty stored, non-final deflate block: what a zlib sync flush writes.
const SYNC_FLUSH: [u8; 5] = [0x00, 0x00, 0x00, 0xff, 0xff];

/// A frame from the server, as far as a client cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Data { stream: u32, fin: bool, data: Vec<u8> },
    /// SYN_REPLY or HEADERS: only whether it ends the server's half of the stream matters.
    Reply { stream: u32, fin: bool },
    Reset { stream: u32, status: u32 },
    Ping(u32),
    GoAway { last_good: u32, status: u32 },
    /// SETTINGS, WINDOW_UPDATE, a SYN_STREAM the server pushes, anything newer: nothing to do.
    Other(u16),
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

fn word(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

/// Reads one frame. A clean end of the connection between frames is `UnexpectedEof`.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Frame> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head).await?;
    let first = word(&head, 0);
    let flags = head[4];
    let len = (word(&head, 4) & 0x00ff_ffff) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    if first & 0x8000_0000 == 0 {
        return Ok(Frame::Data { stream: first & 0x7fff_ffff, fin: flags & FLAG_FIN != 0, data: payload });
    }
    let version = (first >> 16) & 0x7fff;
    if version != 3 {
        return Err(invalid(format!("SPDY version {version} frame; only SPDY/3.1 is spoken here")));
    }
    let kind = (first & 0xffff) as u16;
    let need = |n: usize| if len < n { Err(invalid(format!("SPDY control frame {kind} of {len} bytes is too short"))) } else { Ok(()) };
    let stream = word(&payload, 0) & 0x7fff_ffff;
    Ok(match kind {
        SYN_REPLY | HEADERS => {
            need(4)?;
            Frame::Reply { stream, fin: flags & FLAG_FIN != 0 }
        }
        RST_STREAM => {
            need(8)?;
            Frame::Reset { stream, status: word(&payload, 4) }
        }
        PING => {
            need(4)?;
            Frame::Ping(word(&payload, 0))
        }
        GOAWAY => {
            need(8)?;
            Frame::GoAway { last_good: stream, status: word(&payload, 4) }
        }
        other => Frame::Other(other),
    })
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(0x8003_0000u32 | u32::from(kind)).to_be_bytes());
    out.extend_from_slice(&((u32::from(flags) << 24) | payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A DATA frame (`data` at most [`MAX_PAYLOAD`] bytes); `fin` half-closes the stream.
pub fn data(stream: u32, data: &[u8], fin: bool) -> Vec<u8> {
    debug_assert!(data.len() <= MAX_PAYLOAD);
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&((u32::from(if fin { FLAG_FIN } else { 0 }) << 24) | data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// A PING frame (the answer to the server's is the same frame).
pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

/// A RST_STREAM frame: the stream is over in both directions.
pub fn rst_stream(stream: u32, status: u32) -> Vec<u8> {
    control(RST_STREAM, 0, &[(stream & 0x7fff_ffff).to_be_bytes(), status.to_be_bytes()].concat())
}

/// A GOAWAY frame (status OK) from a client that accepted no server streams.
pub fn goaway() -> Vec<u8> {
    control(GOAWAY, 0, &[0u8; 8])
}

/// The name/value header block, uncompressed: a pair count, then length-prefixed names
/// (lower-case) and values, all lengths 32-bit big-endian.
fn name_value_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (headers.len() as u32).to_be_bytes().to_vec();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The client's end of the connection's header compression: one zlib stream, started by the
/// first header block sent.
#[derive(Default)]
pub struct HeaderWriter {
    started: bool,
}

impl HeaderWriter {
    /// The next piece of the zlib stream, carrying `block`.
    fn compress(&mut self, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(block.len() + 16);
        if !std::mem::replace(&mut self.started, true) {
            out.extend_from_slice(&ZLIB_HEADER);
        }
        for chunk in block.chunks(usize::from(u16::MAX)) {
            // BFINAL 0, BTYPE 00 (stored), padded to the byte; LEN and its complement, little-endian.
            let n = chunk.len() as u16;
            out.push(0);
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&(!n).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(&SYNC_FLUSH);
        out
    }

    /// A SYN_STREAM frame opening client stream `stream` (odd, increasing) with `headers`.
    pub fn syn_stream(&mut self, stream: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        payload.extend_from_slice(&0u32.to_be_bytes()); // associated-to stream
        payload.extend_from_slice(&[0, 0]); // priority 0 (highest), slot 0
        payload.extend_from_slice(&self.compress(&name_value_block(headers)));
        control(SYN_STREAM, 0, &payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inflates a zlib stream made only of stored blocks, as a deflate decoder would.
    fn inflate_stored(mut z: &[u8], with_header: bool) -> Vec<u8> {
        if with_header {
            let h = u16::from_be_bytes([z[0], z[1]]);
            assert_eq!(z[0] & 0x0f, 8, "deflate");
            assert_eq!(h % 31, 0, "zlib header check bits");
            assert_eq!(z[1] & 0x20, 0, "no preset dictionary");
            z = &z[2..];
        }
        let mut out = Vec::new();
        while !z.is_empty() {
            assert_eq!(z[0], 0, "a stored, non-final block");
            let n = u16::from_le_bytes([z[1], z[2]]);
            assert_eq!(!n, u16::from_le_bytes([z[3], z[4]]), "NLEN is LEN's complement");
            out.extend_from_slice(&z[5..5 + usize::from(n)]);
            z = &z[5 + usize::from(n)..];
        }
        out
    }

    #[test]
    fn syn_streams_carry_one_zlib_stream() {
        let mut w = HeaderWriter::default();
        let first = w.syn_stream(1, &[("streamType", "error")]);
        let second = w.syn_stream(3, &[("streamtype", "stdin")]);
        for (frame, id, with_header, kind) in [(&first, 1u32, true, "error"), (&second, 3, false, "stdin")] {
            assert_eq!(&frame[..4], &[0x80, 0x03, 0x00, 0x01], "control, version 3, SYN_STREAM");
            assert_eq!(frame[4], 0, "no flags");
            assert_eq!(word(frame, 4) as usize, frame.len() - 8, "length");
            assert_eq!(word(frame, 8), id);
            assert_eq!(word(frame, 12), 0, "not associated");
            assert_eq!(&frame[16..18], &[0, 0], "priority and slot");
            let block = inflate_stored(&frame[18..], with_header);
            assert_eq!(block, name_value_block(&[("streamtype", kind)]));
            assert!(frame.ends_with(&SYNC_FLUSH));
        }
        let block = name_value_block(&[("streamtype", "resize")]);
        assert_eq!(&block[..8], &[0, 0, 0, 1, 0, 0, 0, 10]);
        assert_eq!(&block[8..18], b"streamtype");
        assert_eq!(&block[18..22], &[0, 0, 0, 6]);
        assert_eq!(&block[22..], b"resize");
    }

    #[test]
    fn long_blocks_span_stored_blocks() {
        let value = "x".repeat(70_000);
        let mut w = HeaderWriter::default();
        let frame = w.syn_stream(1, &[("big", &value)]);
        assert_eq!(inflate_stored(&frame[18..], true), name_value_block(&[("big", &value)]));
    }

    #[test]
    fn data_frames() {
        assert_eq!(data(5, b"hi", false), [0, 0, 0, 5, 0, 0, 0, 2, b'h', b'i']);
        assert_eq!(data(3, b"", true), [0, 0, 0, 3, 1, 0, 0, 0]);
        assert_eq!(ping(2), [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 2]);
        assert_eq!(rst_stream(7, CANCEL), [0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 5]);
        assert_eq!(goaway(), [0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[tokio::test]
    async fn reads_the_servers_frames() {
        let mut wire = Vec::new();
        // A SYN_REPLY whose (compressed) header block is skipped unread.
        wire.extend(control(SYN_REPLY, 0, &[0, 0, 0, 1, 0x78, 0xbb, 0xdf, 0xa2, 0x51, 0xb2]));
        wire.extend(data(3, b"out", false));
        wire.extend(control(HEADERS, FLAG_FIN, &[0, 0, 0, 3, 1, 2, 3]));
        wire.extend(data(1, b"{}", true));
        wire.extend(rst_stream(5, CANCEL));
        wire.extend(control(4, 0, &[0, 0, 0, 0])); // SETTINGS
        wire.extend(control(9, 0, &[0, 0, 0, 1, 0, 0, 0, 9])); // WINDOW_UPDATE
        wire.extend(ping(2));
        wire.extend(goaway());
        let mut r = wire.as_slice();
        let mut frames = Vec::new();
        loop {
            match read_frame(&mut r).await {
                Ok(f) => frames.push(f),
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
                    break;
                }
            }
        }
        assert_eq!(
            frames,
            [
                Frame::Reply { stream: 1, fin: false },
                Frame::Data { stream: 3, fin: false, data: b"out".to_vec() },
                Frame::Reply { stream: 3, fin: true },
                Frame::Data { stream: 1, fin: true, data: b"{}".to_vec() },
                Frame::Reset { stream: 5, status: 5 },
                Frame::Other(4),
                Frame::Other(9),
                Frame::Ping(2),
                Frame::GoAway { last_good: 0, status: 0 },
            ]
        );
    }

    #[tokio::test]
    async fn refuses_short_and_foreign_frames() {
        let short = control(RST_STREAM, 0, &[0, 0, 0, 5]);
        assert!(read_frame(&mut short.as_slice()).await.is_err());
        let mut spdy2 = control(PING, 0, &[0, 0, 0, 2]);
        spdy2[1] = 2;
        assert!(read_frame(&mut spdy2.as_slice()).await.is_err());
        let cut = data(1, b"abc", false);
        assert!(read_frame(&mut &cut[..9]).await.is_err());
    }
}
