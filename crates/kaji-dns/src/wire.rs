//! A small DNS message codec (RFC 1035, EDNS0 of RFC 6891): just what a cluster DNS server
//! reads and writes. Written here rather than taken from a DNS crate (hickory and friends pull
//! in a resolver, async runtimes and crypto we do not use) to keep the build lean on small nodes;
//! the part we need is a few hundred lines.
//!
//! Decoding is defensive: every read is bounds-checked, compression pointers must point strictly
//! backwards (so they cannot loop), labels are at most 63 bytes and names at most 255.
//! Encoding compresses names and truncates to a size limit, setting TC as RFC 2181 §9 asks.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_MX: u16 = 15;
pub const TYPE_TXT: u16 = 16;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_IXFR: u16 = 251;
pub const TYPE_AXFR: u16 = 252;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;

pub const RCODE_NOERROR: u16 = 0;
pub const RCODE_FORMERR: u16 = 1;
pub const RCODE_SERVFAIL: u16 = 2;
pub const RCODE_NXDOMAIN: u16 = 3;
pub const RCODE_NOTIMP: u16 = 4;
pub const RCODE_REFUSED: u16 = 5;
/// Extended (12-bit) rcode, carried half in the header and half in the OPT record.
pub const RCODE_BADVERS: u16 = 16;

/// The largest UDP answer to a client that did not advertise EDNS0 (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_SIZE: usize = 512;
/// What we advertise in our own OPT record (the DNS flag day 2020 figure).
pub const OUR_UDP_SIZE: u16 = 1232;

const MAX_NAME_LEN: usize = 255;
const MAX_LABEL_LEN: usize = 63;

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message ends early")]
    Truncated,
    #[error("label longer than 63 bytes")]
    LabelTooLong,
    #[error("name longer than 255 bytes")]
    NameTooLong,
    #[error("compression pointer does not point backwards")]
    BadPointer,
    #[error("unsupported label type")]
    BadLabelType,
    #[error("bytes after the last record")]
    TrailingBytes,
    #[error("record data length does not match its type")]
    BadRdata,
    #[error("invalid name text: {0}")]
    BadText(String),
}

/// A domain name in uncompressed wire form (length-prefixed labels, ending with the root's 0).
/// Case is kept as written; comparisons that matter to DNS are case-insensitive.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Name(Vec<u8>);

impl Name {
    pub fn root() -> Name {
        Name(vec![0])
    }

    /// From dotted text (`a.b.c` or `a.b.c.`); no escapes.
    pub fn from_dotted(text: &str) -> Result<Name, WireError> {
        let text = text.strip_suffix('.').unwrap_or(text);
        if text.is_empty() {
            return Ok(Name::root());
        }
        Name::from_labels(text.split('.').map(str::as_bytes))
    }

    /// From labels, leftmost first.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a [u8]>) -> Result<Name, WireError> {
        let mut wire = Vec::with_capacity(32);
        for label in labels {
            if label.is_empty() {
                return Err(WireError::BadText("empty label".into()));
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(WireError::LabelTooLong);
            }
            wire.push(label.len() as u8);
            wire.extend_from_slice(label);
        }
        wire.push(0);
        if wire.len() > MAX_NAME_LEN {
            return Err(WireError::NameTooLong);
        }
        Ok(Name(wire))
    }

    /// The labels, leftmost first (the root's empty label is not included).
    pub fn labels(&self) -> Labels<'_> {
        Labels {
            wire: &self.0,
            pos: 0,
        }
    }

    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    pub fn wire(&self) -> &[u8] {
        &self.0
    }

    /// Dotted text with the trailing dot (`a.b.c.`; the root is `.`).
    pub fn to_dotted(&self) -> String {
        let mut out = String::new();
        for label in self.labels() {
            out.push_str(&String::from_utf8_lossy(label));
            out.push('.');
        }
        if out.is_empty() {
            out.push('.');
        }
        out
    }

    pub fn eq_ignore_case(&self, other: &Name) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }

    /// Whether `self` is `zone` or below it (case-insensitive).
    pub fn is_subdomain_of(&self, zone: &Name) -> bool {
        self.strip_zone(zone).is_some()
    }

    /// The labels of `self` left of `zone`, or None when `self` is not in `zone`.
    pub fn strip_zone<'a>(&'a self, zone: &Name) -> Option<Vec<&'a [u8]>> {
        let mine: Vec<&[u8]> = self.labels().collect();
        let theirs: Vec<&[u8]> = zone.labels().collect();
        if theirs.len() > mine.len() {
            return None;
        }
        let split = mine.len() - theirs.len();
        let matches = mine[split..]
            .iter()
            .zip(&theirs)
            .all(|(a, b)| a.eq_ignore_ascii_case(b));
        matches.then(|| mine[..split].to_vec())
    }

    /// `label.self`.
    pub fn prepend(&self, label: &[u8]) -> Result<Name, WireError> {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(WireError::LabelTooLong);
        }
        if self.0.len() + 1 + label.len() > MAX_NAME_LEN {
            return Err(WireError::NameTooLong);
        }
        let mut wire = Vec::with_capacity(self.0.len() + 1 + label.len());
        wire.push(label.len() as u8);
        wire.extend_from_slice(label);
        wire.extend_from_slice(&self.0);
        Ok(Name(wire))
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_dotted())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_dotted())
    }
}

/// Iterator over a [`Name`]'s labels.
pub struct Labels<'a> {
    wire: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(*self.wire.get(self.pos)?);
        if len == 0 {
            return None;
        }
        let label = self.wire.get(self.pos + 1..self.pos + 1 + len)?;
        self.pos += 1 + len;
        Some(label)
    }
}

/// The fixed 12-byte header, flags unpacked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub qr: bool,
    pub opcode: u8,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub ad: bool,
    pub cd: bool,
    /// The low 4 bits of the rcode (the high 8 live in the OPT record).
    pub rcode: u8,
}

impl Header {
    /// Reads the header alone, for answering FORMERR to a message whose body is broken.
    pub fn peek(bytes: &[u8]) -> Option<Header> {
        let b = bytes.get(..12)?;
        Some(Header {
            id: u16::from_be_bytes([b[0], b[1]]),
            qr: b[2] & 0x80 != 0,
            opcode: (b[2] >> 3) & 0x0f,
            aa: b[2] & 0x04 != 0,
            tc: b[2] & 0x02 != 0,
            rd: b[2] & 0x01 != 0,
            ra: b[3] & 0x80 != 0,
            ad: b[3] & 0x20 != 0,
            cd: b[3] & 0x10 != 0,
            rcode: b[3] & 0x0f,
        })
    }

    fn flags(&self) -> [u8; 2] {
        let mut b2 = (self.opcode & 0x0f) << 3;
        if self.qr {
            b2 |= 0x80;
        }
        if self.aa {
            b2 |= 0x04;
        }
        if self.tc {
            b2 |= 0x02;
        }
        if self.rd {
            b2 |= 0x01;
        }
        let mut b3 = self.rcode & 0x0f;
        if self.ra {
            b3 |= 0x80;
        }
        if self.ad {
            b3 |= 0x20;
        }
        if self.cd {
            b3 |= 0x10;
        }
        [b2, b3]
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    pub name: Name,
    pub qtype: u16,
    pub qclass: u16,
}

/// The EDNS0 pseudo-record (OPT), unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    /// The high 8 bits of the extended rcode.
    pub ext_rcode: u8,
    pub version: u8,
    pub dnssec_ok: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Soa {
    pub mname: Name,
    pub rname: Name,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(Name),
    Ns(Name),
    Ptr(Name),
    Soa(Soa),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: Name,
    },
    Txt(Vec<Vec<u8>>),
    /// Any other type, its data as received (only types without embedded names land here).
    Other {
        rtype: u16,
        data: Vec<u8>,
    },
}

impl RData {
    pub fn rtype(&self) -> u16 {
        match self {
            RData::A(_) => TYPE_A,
            RData::Aaaa(_) => TYPE_AAAA,
            RData::Cname(_) => TYPE_CNAME,
            RData::Ns(_) => TYPE_NS,
            RData::Ptr(_) => TYPE_PTR,
            RData::Soa(_) => TYPE_SOA,
            RData::Srv { .. } => TYPE_SRV,
            RData::Txt(_) => TYPE_TXT,
            RData::Other { rtype, .. } => *rtype,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub name: Name,
    pub class: u16,
    pub ttl: u32,
    pub data: RData,
}

impl Record {
    pub fn new(name: Name, ttl: u32, data: RData) -> Record {
        Record {
            name,
            class: CLASS_IN,
            ttl,
            data,
        }
    }
}

/// A whole message. The OPT record is kept apart from the additional section, in `edns`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub questions: Vec<Question>,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
    pub edns: Option<Edns>,
}

impl Message {
    /// The full rcode (header bits plus the OPT's extension).
    pub fn rcode(&self) -> u16 {
        u16::from(self.header.rcode) | self.edns.map_or(0, |e| u16::from(e.ext_rcode) << 4)
    }

    pub fn set_rcode(&mut self, rcode: u16) {
        self.header.rcode = (rcode & 0x0f) as u8;
        if let Some(edns) = &mut self.edns {
            edns.ext_rcode = (rcode >> 4) as u8;
        }
    }

    /// Decodes a message; any malformation is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
        let header = Header::peek(bytes).ok_or(WireError::Truncated)?;
        let count = |i: usize| u16::from_be_bytes([bytes[4 + 2 * i], bytes[5 + 2 * i]]);
        let (qd, an, ns, ar) = (count(0), count(1), count(2), count(3));
        let mut r = Reader {
            msg: bytes,
            pos: 12,
        };
        let mut msg = Message {
            header,
            ..Message::default()
        };
        for _ in 0..qd {
            let name = r.name()?;
            let qtype = r.u16()?;
            let qclass = r.u16()?;
            msg.questions.push(Question {
                name,
                qtype,
                qclass,
            });
        }
        for _ in 0..an {
            msg.answers.push(r.record()?.0);
        }
        for _ in 0..ns {
            msg.authority.push(r.record()?.0);
        }
        for _ in 0..ar {
            let (record, opt) = r.record()?;
            match opt {
                Some(edns) if msg.edns.is_none() => msg.edns = Some(edns),
                // A second OPT is a FORMERR (RFC 6891 §6.1.1).
                Some(_) => return Err(WireError::BadRdata),
                None => msg.additional.push(record),
            }
        }
        if r.pos != bytes.len() {
            return Err(WireError::TrailingBytes);
        }
        Ok(msg)
    }

    /// Encodes with name compression. Records that would make the message longer than `limit`
    /// are left out: a missing answer or authority record sets TC, a missing additional record
    /// does not (RFC 2181 §9). The OPT record always fits (room is kept for it).
    pub fn encode(&self, limit: usize) -> Vec<u8> {
        let mut w = Writer {
            buf: Vec::with_capacity(512),
            names: Vec::new(),
        };
        w.buf.extend_from_slice(&self.header.id.to_be_bytes());
        w.buf.extend_from_slice(&[0, 0]); // flags, below
        w.buf.extend_from_slice(&[0; 8]); // counts, below
        let opt_len = if self.edns.is_some() { 11 } else { 0 };
        let limit = limit.max(12 + opt_len).saturating_sub(opt_len);
        let mut truncated = false;
        let mut qd = 0u16;
        for q in &self.questions {
            w.name(&q.name);
            w.buf.extend_from_slice(&q.qtype.to_be_bytes());
            w.buf.extend_from_slice(&q.qclass.to_be_bytes());
            qd += 1;
        }
        let mut counts = [0u16; 3];
        for (i, (section, required)) in [
            (&self.answers, true),
            (&self.authority, true),
            (&self.additional, false),
        ]
        .into_iter()
        .enumerate()
        {
            if truncated {
                break;
            }
            for record in section {
                let mark = (w.buf.len(), w.names.len());
                w.record(record);
                if w.buf.len() > limit {
                    w.buf.truncate(mark.0);
                    w.names.truncate(mark.1);
                    truncated |= required;
                    break;
                }
                counts[i] += 1;
            }
        }
        let mut ar = counts[2];
        if let Some(edns) = &self.edns {
            w.buf.push(0); // root owner
            w.buf.extend_from_slice(&TYPE_OPT.to_be_bytes());
            w.buf.extend_from_slice(&edns.udp_size.to_be_bytes());
            w.buf.push(edns.ext_rcode);
            w.buf.push(edns.version);
            w.buf
                .extend_from_slice(&(if edns.dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
            w.buf.extend_from_slice(&[0, 0]); // no options
            ar += 1;
        }
        let mut header = self.header;
        header.tc |= truncated;
        w.buf[2..4].copy_from_slice(&header.flags());
        for (i, n) in [qd, counts[0], counts[1], ar].into_iter().enumerate() {
            w.buf[4 + 2 * i..6 + 2 * i].copy_from_slice(&n.to_be_bytes());
        }
        w.buf
    }
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.msg.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A possibly compressed name at the cursor; the cursor ends after its in-place part.
    fn name(&mut self) -> Result<Name, WireError> {
        let mut wire = Vec::with_capacity(32);
        let mut pos = self.pos;
        // Where the current run of labels started; a pointer must go strictly before it,
        // which makes loops impossible.
        let mut run_start = pos;
        let mut resume = None;
        loop {
            let len = *self.msg.get(pos).ok_or(WireError::Truncated)?;
            match len & 0xc0 {
                0x00 => {
                    let len = usize::from(len);
                    if len == 0 {
                        wire.push(0);
                        pos += 1;
                        break;
                    }
                    let label = self
                        .msg
                        .get(pos + 1..pos + 1 + len)
                        .ok_or(WireError::Truncated)?;
                    wire.push(len as u8);
                    wire.extend_from_slice(label);
                    if wire.len() + 1 > MAX_NAME_LEN {
                        return Err(WireError::NameTooLong);
                    }
                    pos += 1 + len;
                }
                0xc0 => {
                    let low = *self.msg.get(pos + 1).ok_or(WireError::Truncated)?;
                    let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                    if target >= run_start {
                        return Err(WireError::BadPointer);
                    }
                    if resume.is_none() {
                        resume = Some(pos + 2);
                    }
                    pos = target;
                    run_start = target;
                }
                // 0x40 (extended labels, RFC 6891 retired them) and 0x80 (unassigned): a
                // "length" of 64..=191 is never a valid label.
                _ => return Err(WireError::BadLabelType),
            }
        }
        self.pos = resume.unwrap_or(pos);
        Ok(Name(wire))
    }

    /// A resource record; an OPT comes back unpacked beside a placeholder record.
    fn record(&mut self) -> Result<(Record, Option<Edns>), WireError> {
        let name = self.name()?;
        let rtype = self.u16()?;
        let class = self.u16()?;
        let ttl = self.u32()?;
        let rdlen = usize::from(self.u16()?);
        let start = self.pos;
        let end = start + rdlen;
        if end > self.msg.len() {
            return Err(WireError::Truncated);
        }
        if rtype == TYPE_OPT {
            if name.0 != [0] {
                return Err(WireError::BadRdata);
            }
            self.pos = end; // options are ignored
            let edns = Edns {
                udp_size: class,
                ext_rcode: (ttl >> 24) as u8,
                version: (ttl >> 16) as u8,
                dnssec_ok: ttl & 0x8000 != 0,
            };
            let placeholder = Record {
                name,
                class,
                ttl,
                data: RData::Other {
                    rtype,
                    data: Vec::new(),
                },
            };
            return Ok((placeholder, Some(edns)));
        }
        let data = match rtype {
            TYPE_A => {
                let b: [u8; 4] = self
                    .take(rdlen)?
                    .try_into()
                    .map_err(|_| WireError::BadRdata)?;
                RData::A(Ipv4Addr::from(b))
            }
            TYPE_AAAA => {
                let b: [u8; 16] = self
                    .take(rdlen)?
                    .try_into()
                    .map_err(|_| WireError::BadRdata)?;
                RData::Aaaa(Ipv6Addr::from(b))
            }
            TYPE_CNAME => RData::Cname(self.name()?),
            TYPE_NS => RData::Ns(self.name()?),
            TYPE_PTR => RData::Ptr(self.name()?),
            TYPE_SOA => RData::Soa(Soa {
                mname: self.name()?,
                rname: self.name()?,
                serial: self.u32()?,
                refresh: self.u32()?,
                retry: self.u32()?,
                expire: self.u32()?,
                minimum: self.u32()?,
            }),
            TYPE_SRV => RData::Srv {
                priority: self.u16()?,
                weight: self.u16()?,
                port: self.u16()?,
                target: self.name()?,
            },
            TYPE_TXT => {
                let mut strings = Vec::new();
                while self.pos < end {
                    let len = usize::from(self.u8()?);
                    strings.push(self.take(len)?.to_vec());
                }
                RData::Txt(strings)
            }
            _ => RData::Other {
                rtype,
                data: self.take(rdlen)?.to_vec(),
            },
        };
        if self.pos != end {
            return Err(WireError::BadRdata);
        }
        Ok((
            Record {
                name,
                class,
                ttl,
                data,
            },
            None,
        ))
    }
}

struct Writer {
    buf: Vec<u8>,
    /// Names (suffixes) already written and where: the compression table.
    names: Vec<(Vec<u8>, u16)>,
}

impl Writer {
    fn name(&mut self, name: &Name) {
        let wire = name.wire();
        let mut pos = 0;
        while wire[pos] != 0 {
            let suffix = &wire[pos..];
            if let Some((_, offset)) = self
                .names
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(suffix))
            {
                self.buf.extend_from_slice(&(0xc000 | offset).to_be_bytes());
                return;
            }
            if self.buf.len() < 0x3fff {
                self.names.push((suffix.to_vec(), self.buf.len() as u16));
            }
            let len = usize::from(wire[pos]);
            self.buf.extend_from_slice(&wire[pos..pos + 1 + len]);
            pos += 1 + len;
        }
        self.buf.push(0);
    }

    fn record(&mut self, r: &Record) {
        self.name(&r.name);
        self.buf.extend_from_slice(&r.data.rtype().to_be_bytes());
        self.buf.extend_from_slice(&r.class.to_be_bytes());
        self.buf.extend_from_slice(&r.ttl.to_be_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        match &r.data {
            RData::A(ip) => self.buf.extend_from_slice(&ip.octets()),
            RData::Aaaa(ip) => self.buf.extend_from_slice(&ip.octets()),
            RData::Cname(n) | RData::Ns(n) | RData::Ptr(n) => self.name(n),
            RData::Soa(soa) => {
                self.name(&soa.mname);
                self.name(&soa.rname);
                for v in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] {
                    self.buf.extend_from_slice(&v.to_be_bytes());
                }
            }
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                for v in [priority, weight, port] {
                    self.buf.extend_from_slice(&v.to_be_bytes());
                }
                // RFC 2782: the target is not compressed.
                self.buf.extend_from_slice(target.wire());
            }
            RData::Txt(strings) => {
                for s in strings {
                    let s = &s[..s.len().min(255)];
                    self.buf.push(s.len() as u8);
                    self.buf.extend_from_slice(s);
                }
            }
            RData::Other { data, .. } => self.buf.extend_from_slice(data),
        }
        let rdlen = (self.buf.len() - len_at - 2) as u16;
        self.buf[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    }
}

/// A query message for `name`/`qtype` (forwarding and tests).
pub fn query(id: u16, name: Name, qtype: u16, edns: Option<u16>) -> Message {
    Message {
        header: Header {
            id,
            rd: true,
            ..Header::default()
        },
        questions: vec![Question {
            name,
            qtype,
            qclass: CLASS_IN,
        }],
        edns: edns.map(|udp_size| Edns {
            udp_size,
            ext_rcode: 0,
            version: 0,
            dnssec_ok: false,
        }),
        ..Message::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_dotted(s).unwrap()
    }

    fn sample() -> Message {
        let mut m = query(
            0x1234,
            n("web.default.svc.cluster.local"),
            TYPE_SRV,
            Some(1232),
        );
        m.header.qr = true;
        m.header.aa = true;
        m.answers = vec![
            Record::new(
                n("web.default.svc.cluster.local"),
                5,
                RData::A(Ipv4Addr::new(10, 43, 0, 7)),
            ),
            Record::new(
                n("web.default.svc.cluster.local"),
                5,
                RData::Aaaa("fd00::7".parse().unwrap()),
            ),
            Record::new(
                n("web.default.svc.cluster.local"),
                5,
                RData::Srv {
                    priority: 0,
                    weight: 100,
                    port: 80,
                    target: n("web.default.svc.cluster.local"),
                },
            ),
            Record::new(n("x.cluster.local"), 5, RData::Cname(n("example.com"))),
            Record::new(
                n("7.0.43.10.in-addr.arpa"),
                5,
                RData::Ptr(n("web.default.svc.cluster.local")),
            ),
            Record::new(
                n("dns-version.cluster.local"),
                5,
                RData::Txt(vec![b"1.1.0".to_vec()]),
            ),
        ];
        m.authority = vec![Record::new(
            n("cluster.local"),
            5,
            RData::Soa(Soa {
                mname: n("ns.dns.cluster.local"),
                rname: n("hostmaster.cluster.local"),
                serial: 1,
                refresh: 7200,
                retry: 1800,
                expire: 86400,
                minimum: 5,
            }),
        )];
        m.additional = vec![Record::new(
            n("ns.dns.cluster.local"),
            5,
            RData::Ns(n("a.b")),
        )];
        m
    }

    #[test]
    fn round_trip_every_record_kind() {
        let m = sample();
        let bytes = m.encode(65535);
        assert_eq!(Message::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn names_are_compressed() {
        let name = n("web.default.svc.cluster.local");
        let mut m = query(1, name.clone(), TYPE_A, None);
        for i in 0..10u8 {
            m.answers.push(Record::new(
                name.clone(),
                5,
                RData::A(Ipv4Addr::new(10, 0, 0, i)),
            ));
        }
        let bytes = m.encode(65535);
        // Header, question, then ten answers of pointer (2) + fixed part (10) + address (4).
        assert_eq!(bytes.len(), 12 + name.wire().len() + 4 + 10 * 16);
        assert_eq!(bytes[12 + name.wire().len() + 4..][..2], [0xc0, 12]);
        assert_eq!(Message::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn truncation_sets_tc_and_keeps_opt() {
        let mut m = sample();
        for i in 0..100u8 {
            m.answers.push(Record::new(
                n("many.cluster.local"),
                5,
                RData::A(Ipv4Addr::new(10, 0, 0, i)),
            ));
        }
        let bytes = m.encode(512);
        assert!(bytes.len() <= 512);
        let back = Message::decode(&bytes).unwrap();
        assert!(back.header.tc);
        assert!(back.edns.is_some());
        assert!(back.authority.is_empty() && back.additional.is_empty());
        assert!(!back.answers.is_empty());
    }

    #[test]
    fn dropping_additional_does_not_set_tc() {
        let mut m = query(1, n("a.b"), TYPE_A, None);
        m.answers
            .push(Record::new(n("a.b"), 5, RData::A(Ipv4Addr::LOCALHOST)));
        for i in 0..100u8 {
            m.additional.push(Record::new(
                n("c.d"),
                5,
                RData::A(Ipv4Addr::new(1, 1, 1, i)),
            ));
        }
        let back = Message::decode(&m.encode(512)).unwrap();
        assert!(!back.header.tc);
        assert_eq!(back.answers.len(), 1);
        assert!(back.additional.len() < 100);
    }

    #[test]
    fn pointer_loops_are_rejected() {
        let mut bytes = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]); // points at itself
        assert_eq!(Message::decode(&bytes), Err(WireError::BadPointer));
        let mut bytes = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&[1, b'a', 0xc0, 12, 0, 1, 0, 1]); // a. -> back to a.
        assert_eq!(Message::decode(&bytes), Err(WireError::BadPointer));
        let mut bytes = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0xc0, 200, 0, 1, 0, 1]); // forward, past the end
        assert_eq!(Message::decode(&bytes), Err(WireError::BadPointer));
    }

    #[test]
    fn backward_pointers_decode() {
        // Question "a.b." then an answer whose name points at offset 12.
        let mut bytes = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        bytes.extend_from_slice(&[1, b'a', 1, b'b', 0, 0, 1, 0, 1]);
        bytes.extend_from_slice(&[0xc0, 14, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4]);
        let m = Message::decode(&bytes).unwrap();
        assert_eq!(m.answers[0].name, n("b"));
        assert_eq!(m.answers[0].data, RData::A(Ipv4Addr::new(1, 2, 3, 4)));
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(Message::decode(&[0; 5]), Err(WireError::Truncated));
        // Label of 64 bytes (length byte 0x40).
        let mut bytes = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40];
        bytes.extend_from_slice(&[b'a'; 64]);
        bytes.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert!(Message::decode(&bytes).is_err());
        // Name over 255 bytes.
        let mut bytes = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            bytes.push(63);
            bytes.extend_from_slice(&[b'a'; 63]);
        }
        bytes.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(Message::decode(&bytes), Err(WireError::NameTooLong));
        // Question cut short.
        let bytes = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a', b'b'];
        assert_eq!(Message::decode(&bytes), Err(WireError::Truncated));
        // Counts promise more than is there.
        let bytes = [0, 1, 0, 0, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 1, 0, 1];
        assert_eq!(Message::decode(&bytes), Err(WireError::Truncated));
        // A record whose rdlength lies.
        let mut bytes = vec![0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 5, 0, 3, 1, 2, 3]);
        assert_eq!(Message::decode(&bytes), Err(WireError::BadRdata));
        // Trailing garbage.
        let mut bytes = query(1, n("a"), TYPE_A, None).encode(512);
        bytes.push(0);
        assert_eq!(Message::decode(&bytes), Err(WireError::TrailingBytes));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        // A cheap deterministic fuzz: mutations of a valid message and random buffers.
        let base = sample().encode(65535);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut bytes = base.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % bytes.len();
                bytes[i] = next() as u8;
            }
            bytes.truncate((next() as usize) % (bytes.len() + 1));
            let _ = Message::decode(&bytes);
            let random: Vec<u8> = (0..(next() % 64)).map(|_| next() as u8).collect();
            let _ = Message::decode(&random);
        }
    }

    #[test]
    fn edns_and_extended_rcode() {
        let mut m = query(7, n("a"), TYPE_A, Some(4096));
        m.header.qr = true;
        m.set_rcode(RCODE_BADVERS);
        let back = Message::decode(&m.encode(512)).unwrap();
        assert_eq!(back.rcode(), RCODE_BADVERS);
        assert_eq!(back.edns.unwrap().udp_size, 4096);
    }

    #[test]
    fn names_compare_case_insensitively() {
        let q = n("Web.Default.SVC.Cluster.Local");
        let zone = n("cluster.local");
        let rest = q.strip_zone(&zone).unwrap();
        assert_eq!(rest, vec![&b"Web"[..], b"Default", b"SVC"]);
        assert!(!n("cluster.localx").is_subdomain_of(&zone));
        assert_eq!(q.to_dotted(), "Web.Default.SVC.Cluster.Local.");
        assert!(Name::from_dotted(&"a".repeat(64)).is_err());
    }
}
