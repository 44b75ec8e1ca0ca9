//! On-disk encodings of the `kv` and `history` tables. Everything read back from disk is
//! checked: a short or malformed record is a [`StoreError::Backend`] naming what was bad.

use crate::{EventType, ItemRef, KeyValue, Revision, StoreError, WatchEvent};

const HISTORY_FORMAT: u8 = 1;
const PUT: u8 = 0;
const DELETE: u8 = 1;

/// `kv` table value: `create_revision` (i64 LE), `mod_revision` (i64 LE), then the value bytes.
pub(crate) fn encode_kv(
    create_revision: Revision,
    mod_revision: Revision,
    value: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&create_revision.to_le_bytes());
    out.extend_from_slice(&mod_revision.to_le_bytes());
    out.extend_from_slice(value);
    out
}

pub(crate) fn decode_kv(key: &str, raw: &[u8]) -> Result<KeyValue, StoreError> {
    Ok(peek_kv(key, raw)?.to_key_value())
}

/// A `kv` record read in place.
pub(crate) fn peek_kv<'a>(key: &'a str, raw: &'a [u8]) -> Result<ItemRef<'a>, StoreError> {
    let mut r = Reader::new(raw, move || format!("record of key {key:?}"));
    let create_revision = r.i64()?;
    let mod_revision = r.i64()?;
    Ok(ItemRef {
        key,
        value: r.rest(),
        create_revision,
        mod_revision,
    })
}

/// One `history` record (keyed by its revision, which is the event's `mod_revision`).
///
/// Layout: format byte, event type byte, unix time in ms (i64), key (u32 length + bytes),
/// `create_revision` (i64), value (u32 length + bytes; empty for a delete, whose value is the
/// previous one), then a presence byte and the previous kv's `create_revision`,
/// `mod_revision` and value.
pub(crate) fn encode_event(event: &WatchEvent, unix_ms: i64) -> Result<Vec<u8>, StoreError> {
    let prev_len = event.prev.as_ref().map_or(0, |p| p.value.len());
    let mut out = Vec::with_capacity(48 + event.kv.key.len() + event.kv.value.len() + prev_len);
    out.push(HISTORY_FORMAT);
    out.push(match event.event_type {
        EventType::Put => PUT,
        EventType::Delete => DELETE,
    });
    out.extend_from_slice(&unix_ms.to_le_bytes());
    put_bytes(&mut out, event.kv.key.as_bytes())?;
    out.extend_from_slice(&event.kv.create_revision.to_le_bytes());
    match event.event_type {
        EventType::Put => put_bytes(&mut out, &event.kv.value)?,
        EventType::Delete => put_bytes(&mut out, &[])?,
    }
    match &event.prev {
        None => out.push(0),
        Some(prev) => {
            out.push(1);
            out.extend_from_slice(&prev.create_revision.to_le_bytes());
            out.extend_from_slice(&prev.mod_revision.to_le_bytes());
            put_bytes(&mut out, &prev.value)?;
        }
    }
    Ok(out)
}

/// Just the key and time of a history record, for filtering and compaction without copying
/// values.
pub(crate) fn peek_event(revision: Revision, raw: &[u8]) -> Result<(&str, i64), StoreError> {
    let mut r = history_reader(revision, raw)?;
    r.u8()?; // event type
    let unix_ms = r.i64()?;
    let key = r.str()?;
    Ok((key, unix_ms))
}

pub(crate) fn decode_event(revision: Revision, raw: &[u8]) -> Result<WatchEvent, StoreError> {
    let mut r = history_reader(revision, raw)?;
    let event_type = match r.u8()? {
        PUT => EventType::Put,
        DELETE => EventType::Delete,
        other => return Err(r.corrupt(&format!("unknown event type {other}"))),
    };
    let _unix_ms = r.i64()?;
    let key = r.str()?.to_owned();
    let create_revision = r.i64()?;
    let value = r.bytes()?.to_vec();
    let prev = match r.u8()? {
        0 => None,
        1 => Some(KeyValue {
            key: key.clone(),
            create_revision: r.i64()?,
            mod_revision: r.i64()?,
            value: r.bytes()?.to_vec(),
        }),
        other => return Err(r.corrupt(&format!("bad presence byte {other}"))),
    };
    let value = match (event_type, &prev) {
        (EventType::Put, _) => value,
        (EventType::Delete, Some(prev)) => prev.value.clone(),
        (EventType::Delete, None) => return Err(r.corrupt("delete without a previous value")),
    };
    Ok(WatchEvent {
        event_type,
        kv: KeyValue {
            key,
            value,
            create_revision,
            mod_revision: revision,
        },
        prev,
    })
}

fn history_reader(revision: Revision, raw: &[u8]) -> Result<Reader<'_>, StoreError> {
    let mut r = Reader::new(raw, move || {
        format!("history record at revision {revision}")
    });
    match r.u8()? {
        HISTORY_FORMAT => Ok(r),
        other => Err(r.corrupt(&format!("unknown format {other}"))),
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| StoreError::Backend(format!("value of {} bytes is too large", bytes.len())))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// A bounds-checked cursor over a record; `what` names the record in errors.
struct Reader<'a> {
    raw: &'a [u8],
    pos: usize,
    what: Box<dyn Fn() -> String + 'a>,
}

impl<'a> Reader<'a> {
    fn new(raw: &'a [u8], what: impl Fn() -> String + 'a) -> Self {
        Reader {
            raw,
            pos: 0,
            what: Box::new(what),
        }
    }

    fn corrupt(&self, detail: &str) -> StoreError {
        StoreError::Backend(format!(
            "corrupt {} (offset {}): {detail}",
            (self.what)(),
            self.pos
        ))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.raw.len())
            .ok_or_else(|| self.corrupt(&format!("truncated, wanted {n} more bytes")))?;
        let out = &self.raw[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64, StoreError> {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(buf))
    }

    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(self.take(4)?);
        let len = u32::from_le_bytes(buf) as usize;
        self.take(len)
    }

    fn str(&mut self) -> Result<&'a str, StoreError> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|e| self.corrupt(&format!("key is not UTF-8: {e}")))
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.raw[self.pos..];
        self.pos = self.raw.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(value: &[u8], create: Revision, modr: Revision) -> KeyValue {
        KeyValue {
            key: "/k".into(),
            value: value.to_vec(),
            create_revision: create,
            mod_revision: modr,
        }
    }

    #[test]
    fn events_round_trip() {
        let put = WatchEvent {
            event_type: EventType::Put,
            kv: kv(b"new", 3, 7),
            prev: Some(kv(b"old", 3, 5)),
        };
        let delete = WatchEvent {
            event_type: EventType::Delete,
            kv: kv(b"old", 3, 7),
            prev: Some(kv(b"old", 3, 5)),
        };
        let create = WatchEvent {
            event_type: EventType::Put,
            kv: kv(b"v", 7, 7),
            prev: None,
        };
        for event in [put, delete, create] {
            let raw = encode_event(&event, 42).expect("encode");
            let back = decode_event(7, &raw).expect("decode");
            assert_eq!(back.event_type, event.event_type);
            assert_eq!(back.kv, event.kv);
            assert_eq!(back.prev, event.prev);
            assert_eq!(peek_event(7, &raw).expect("peek"), ("/k", 42));
        }
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let event = WatchEvent {
            event_type: EventType::Put,
            kv: kv(b"new", 3, 7),
            prev: Some(kv(b"old", 3, 5)),
        };
        let raw = encode_event(&event, 1).expect("encode");
        for cut in 0..raw.len() {
            assert!(decode_event(7, &raw[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_kv("/k", &[1, 2, 3]).is_err());
        let ok = encode_kv(2, 3, b"x");
        assert_eq!(decode_kv("/k", &ok).expect("decode"), kv(b"x", 2, 3));
    }
}
