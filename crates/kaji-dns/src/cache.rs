//! A small cache of forwarded answers, honouring their TTLs (as CoreDNS's `cache 30` in the
//! default Corefile, capped at 30 s). Cluster names are never cached here: the index is
//! already in memory and changes must show at once.
//!
//! Entries are decoded messages; a hit is re-encoded with the client's ID and the TTLs lowered
//! by the time spent in the cache. Time is passed in, so the logic is testable without waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::wire::{Message, Question, RCODE_NOERROR, RCODE_NXDOMAIN};

/// CoreDNS's default Corefile says `cache 30`.
pub const MAX_TTL: Duration = Duration::from_secs(30);
const CAPACITY: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    /// The question name, lowercase, in wire form.
    name: Vec<u8>,
    qtype: u16,
    qclass: u16,
    edns: bool,
    dnssec_ok: bool,
    checking_disabled: bool,
}

impl Key {
    fn of(query: &Message) -> Option<Key> {
        let [
            Question {
                name,
                qtype,
                qclass,
            },
        ] = query.questions.as_slice()
        else {
            return None;
        };
        Some(Key {
            name: name.wire().to_ascii_lowercase(),
            qtype: *qtype,
            qclass: *qclass,
            edns: query.edns.is_some(),
            dnssec_ok: query.edns.is_some_and(|e| e.dnssec_ok),
            checking_disabled: query.header.cd,
        })
    }
}

struct Entry {
    reply: Message,
    stored: Instant,
    expires: Instant,
}

#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Cache {
    /// The cached reply to `query`, with its ID and TTLs adjusted; None on a miss.
    pub fn get(&self, query: &Message, now: Instant) -> Option<Message> {
        let key = Key::of(query)?;
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(&key)?;
        if now >= entry.expires {
            return None;
        }
        let age = now.duration_since(entry.stored).as_secs() as u32;
        let mut reply = entry.reply.clone();
        reply.header.id = query.header.id;
        reply.header.rd = query.header.rd;
        for r in reply
            .answers
            .iter_mut()
            .chain(&mut reply.authority)
            .chain(&mut reply.additional)
        {
            r.ttl = r.ttl.saturating_sub(age);
        }
        Some(reply)
    }

    /// Keeps `reply` (an upstream's answer to `query`) if it is worth keeping: a complete
    /// NOERROR or NXDOMAIN answer with a non-zero TTL.
    pub fn put(&self, query: &Message, reply: &Message, now: Instant) {
        let Some(key) = Key::of(query) else { return };
        if reply.header.tc || !matches!(reply.rcode(), RCODE_NOERROR | RCODE_NXDOMAIN) {
            return;
        }
        // Negative answers live as long as their SOA says (RFC 2308); an answer without
        // records and without SOA is not cached.
        let ttl = reply
            .answers
            .iter()
            .chain(&reply.authority)
            .map(|r| r.ttl)
            .min()
            .unwrap_or(0);
        let ttl = Duration::from_secs(u64::from(ttl)).min(MAX_TTL);
        if ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        // What we hand out never outlives our copy.
        let mut reply = reply.clone();
        let cap = MAX_TTL.as_secs() as u32;
        for r in reply
            .answers
            .iter_mut()
            .chain(&mut reply.authority)
            .chain(&mut reply.additional)
        {
            r.ttl = r.ttl.min(cap);
        }
        entries.insert(
            key,
            Entry {
                reply,
                stored: now,
                expires: now + ttl,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{self, Name, RData, Record, TYPE_A};

    fn query(id: u16, name: &str) -> Message {
        wire::query(id, Name::from_dotted(name).unwrap(), TYPE_A, None)
    }

    fn reply(q: &Message, ttl: u32) -> Message {
        let mut r = q.clone();
        r.header.qr = true;
        let name = q.questions[0].name.clone();
        r.answers.push(Record::new(
            name,
            ttl,
            RData::A("192.0.2.1".parse().unwrap()),
        ));
        r
    }

    #[test]
    fn hits_carry_the_new_id_and_lowered_ttls() {
        let cache = Cache::default();
        let t0 = Instant::now();
        let q = query(1, "Example.org");
        cache.put(&q, &reply(&q, 20), t0);
        let hit = cache
            .get(&query(2, "example.ORG"), t0 + Duration::from_secs(5))
            .unwrap();
        assert_eq!(hit.header.id, 2);
        assert_eq!(hit.answers[0].ttl, 15);
        assert!(
            cache
                .get(&query(3, "example.org"), t0 + Duration::from_secs(21))
                .is_none()
        );
    }

    #[test]
    fn ttls_are_capped_and_failures_not_kept() {
        let cache = Cache::default();
        let t0 = Instant::now();
        let q = query(1, "a.example");
        cache.put(&q, &reply(&q, 3600), t0);
        assert!(cache.get(&q, t0 + MAX_TTL).is_none());
        let q = query(1, "b.example");
        let mut failed = reply(&q, 60);
        failed.set_rcode(wire::RCODE_SERVFAIL);
        cache.put(&q, &failed, t0);
        assert!(cache.get(&q, t0).is_none());
        let q = query(1, "c.example");
        cache.put(&q, &reply(&q, 0), t0);
        assert!(cache.get(&q, t0).is_none());
    }
}
