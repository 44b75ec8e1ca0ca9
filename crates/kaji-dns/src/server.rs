//! The sockets: UDP and TCP loops around [`records::answer`], and forwarding of everything
//! else to the upstream resolvers.
//!
//! A query the index answers is handled inline on the receiving task (no allocation beyond the
//! reply); a query that must go upstream is handed to its own task so a slow resolver never
//! holds up cluster names. Nothing here panics on input: undecodable queries get FORMERR when
//! their header can be read, and are dropped otherwise.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::cache::Cache;
use crate::index::SharedIndex;
use crate::metrics::{Metrics, Proto, Source};
use crate::records::{self, Zone};
use crate::wire::{
    self, CLASS_IN, CLASSIC_UDP_SIZE, Edns, Header, Message, OUR_UDP_SIZE, RCODE_BADVERS,
    RCODE_FORMERR, RCODE_NOERROR, RCODE_NOTIMP, RCODE_NXDOMAIN, RCODE_REFUSED, RCODE_SERVFAIL,
    TYPE_AXFR, TYPE_IXFR,
};

/// How long one upstream gets before the next is tried.
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub zone: Zone,
    /// Resolvers for names outside the zone, tried in order; empty: such names get SERVFAIL.
    pub upstreams: Vec<SocketAddr>,
    pub forward_timeout: Duration,
}

struct Server {
    index: SharedIndex,
    config: ServerConfig,
    metrics: Arc<Metrics>,
    cache: Cache,
}

/// What to do with one received packet.
enum Decision {
    Drop,
    Reply {
        bytes: Vec<u8>,
        source: Source,
        rcode: u16,
    },
    /// Relay the query to the upstreams.
    Forward(Message),
    /// An answer ending in a CNAME outside the zone: resolve the target upstream, then reply.
    Chase {
        reply: Message,
        target: wire::Name,
        limit: usize,
    },
}

/// Serves DNS on `udp` (and `tcp` when given) from `index` until a socket fails.
pub async fn serve(
    index: SharedIndex,
    config: ServerConfig,
    metrics: Arc<Metrics>,
    udp: UdpSocket,
    tcp: Option<TcpListener>,
) -> anyhow::Result<()> {
    let server = Arc::new(Server {
        index,
        config,
        metrics,
        cache: Cache::default(),
    });
    let udp = Arc::new(udp);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        tasks.spawn(udp_loop(server.clone(), udp.clone()));
    }
    if let Some(tcp) = tcp {
        tasks.spawn(tcp_loop(server.clone(), tcp));
    }
    match tasks.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(anyhow::anyhow!("DNS server task ended: {e}")),
        None => Ok(()),
    }
}

async fn udp_loop(server: Arc<Server>, sock: Arc<UdpSocket>) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) if transient(&e) => continue,
            Err(e) => return Err(e).context("receiving DNS over UDP"),
        };
        let start = Instant::now();
        let packet = &buf[..len];
        let (decision, qtype) = server.decide(packet, Proto::Udp, peer);
        match decision {
            Decision::Drop => {}
            Decision::Reply {
                bytes,
                source,
                rcode,
            } => {
                let _ = sock.send_to(&bytes, peer).await;
                server
                    .metrics
                    .response(source, rcode, qtype, start.elapsed());
            }
            decision => {
                let (server, sock, packet) = (server.clone(), sock.clone(), packet.to_vec());
                tokio::spawn(async move {
                    let (bytes, source, rcode) =
                        server.complete(decision, &packet, Proto::Udp).await;
                    let _ = sock.send_to(&bytes, peer).await;
                    server
                        .metrics
                        .response(source, rcode, qtype, start.elapsed());
                });
            }
        }
    }
}

fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

async fn tcp_loop(server: Arc<Server>, listener: TcpListener) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin.
                tracing::debug!(error = %e, "accepting DNS over TCP");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(tcp_connection(server.clone(), stream, peer));
    }
}

async fn tcp_connection(server: Arc<Server>, mut stream: TcpStream, peer: SocketAddr) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else {
            return;
        };
        let packet = &mut buf[..usize::from(len)];
        if !matches!(
            tokio::time::timeout(TCP_IDLE, stream.read_exact(packet)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let start = Instant::now();
        let (decision, qtype) = server.decide(packet, Proto::Tcp, peer);
        let (bytes, source, rcode) = match decision {
            Decision::Drop => return,
            Decision::Reply {
                bytes,
                source,
                rcode,
            } => (bytes, source, rcode),
            decision => server.complete(decision, packet, Proto::Tcp).await,
        };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
        server
            .metrics
            .response(source, rcode, qtype, start.elapsed());
    }
}

impl Server {
    /// Everything that needs no waiting: decoding, cluster answers, errors.
    /// Also returns the query type, for the metrics.
    fn decide(&self, packet: &[u8], proto: Proto, peer: SocketAddr) -> (Decision, u16) {
        let query = match Message::decode(packet) {
            Ok(q) => q,
            Err(_) => {
                let Some(header) = Header::peek(packet) else {
                    return (Decision::Drop, 0);
                };
                if header.qr {
                    return (Decision::Drop, 0);
                }
                self.metrics.request(proto, peer.is_ipv6(), 0);
                let reply = Message {
                    header: reply_header(&header),
                    ..Message::default()
                };
                return (error_reply(reply, RCODE_FORMERR, proto), 0);
            }
        };
        if query.header.qr {
            return (Decision::Drop, 0); // a response sent to us: never answer it (no loops)
        }
        let qtype = query.questions.first().map_or(0, |q| q.qtype);
        self.metrics.request(proto, peer.is_ipv6(), qtype);
        let mut reply = empty_reply(&query);
        if query.header.opcode != 0 {
            return (error_reply(reply, RCODE_NOTIMP, proto), qtype);
        }
        if query.edns.is_some_and(|e| e.version > 0) {
            reply.questions.clear();
            return (error_reply(reply, RCODE_BADVERS, proto), qtype);
        }
        let [q] = query.questions.as_slice() else {
            return (error_reply(reply, RCODE_FORMERR, proto), qtype);
        };
        let zone = &self.config.zone;
        let ours = q.name.is_subdomain_of(&zone.domain);
        if ours && (q.qclass != CLASS_IN || q.qtype == TYPE_AXFR || q.qtype == TYPE_IXFR) {
            return (error_reply(reply, RCODE_REFUSED, proto), qtype);
        }
        let answer = if q.qclass == CLASS_IN {
            records::answer(q, &self.index.load(), zone)
        } else {
            None
        };
        let Some(answer) = answer else {
            if let Some(hit) = self.cache.get(&query, Instant::now()) {
                let rcode = hit.rcode();
                let bytes = hit.encode(reply_limit(&query, proto));
                let source = Source::Cache;
                return (
                    Decision::Reply {
                        bytes,
                        source,
                        rcode,
                    },
                    qtype,
                );
            }
            return (Decision::Forward(query), qtype);
        };
        reply.header.aa = true;
        reply.set_rcode(answer.rcode);
        reply.answers = answer.answers;
        reply.authority = answer.authority;
        reply.additional = answer.additional;
        let limit = reply_limit(&query, proto);
        let decision = match answer.chase {
            Some(target) if !self.config.upstreams.is_empty() => Decision::Chase {
                reply,
                target,
                limit,
            },
            _ => Decision::Reply {
                bytes: reply.encode(limit),
                source: Source::Kubernetes,
                rcode: answer.rcode,
            },
        };
        (decision, qtype)
    }

    /// The waiting part: forwarding and CNAME chasing.
    async fn complete(
        &self,
        decision: Decision,
        packet: &[u8],
        proto: Proto,
    ) -> (Vec<u8>, Source, u16) {
        match decision {
            Decision::Forward(query) => {
                let limit = reply_limit(&query, proto);
                match self.forward(packet, proto).await {
                    Some(bytes) if bytes.len() <= limit => {
                        let rcode = Header::peek(&bytes).map_or(0, |h| u16::from(h.rcode));
                        if let Ok(reply) = Message::decode(&bytes) {
                            self.cache.put(&query, &reply, Instant::now());
                        }
                        (bytes, Source::Forward, rcode)
                    }
                    Some(bytes) => {
                        // Larger than the client can take over UDP: tell it to retry on TCP.
                        let mut reply = Message {
                            header: Header::peek(&bytes).unwrap_or_default(),
                            questions: query.questions.clone(),
                            ..Message::default()
                        };
                        reply.header.tc = true;
                        let rcode = u16::from(reply.header.rcode);
                        (reply.encode(limit), Source::Forward, rcode)
                    }
                    None => {
                        let mut reply = empty_reply(&query);
                        reply.set_rcode(RCODE_SERVFAIL);
                        (reply.encode(limit), Source::Forward, RCODE_SERVFAIL)
                    }
                }
            }
            Decision::Chase {
                mut reply,
                target,
                limit,
            } => {
                let qtype = reply.questions.first().map_or(0, |q| q.qtype);
                let chase = wire::query(rand::random(), target, qtype, Some(OUR_UDP_SIZE));
                if let Some(bytes) = self.forward(&chase.encode(65535), Proto::Udp).await
                    && let Ok(upstream) = Message::decode(&bytes)
                {
                    match upstream.rcode() {
                        RCODE_NOERROR => reply.answers.extend(upstream.answers),
                        RCODE_NXDOMAIN => reply.set_rcode(RCODE_NXDOMAIN),
                        _ => {}
                    }
                }
                let rcode = reply.rcode();
                (reply.encode(limit), Source::Kubernetes, rcode)
            }
            Decision::Drop | Decision::Reply { .. } => (Vec::new(), Source::Server, 0),
        }
    }

    /// Relays `packet` to the upstreams in turn; the first answer wins.
    async fn forward(&self, packet: &[u8], proto: Proto) -> Option<Vec<u8>> {
        for upstream in &self.config.upstreams {
            self.metrics.forward(*upstream);
            let exchange = async {
                match proto {
                    Proto::Udp => exchange_udp(*upstream, packet).await,
                    Proto::Tcp => exchange_tcp(*upstream, packet).await,
                }
            };
            match tokio::time::timeout(self.config.forward_timeout, exchange).await {
                Ok(Ok(reply)) => return Some(reply),
                Ok(Err(e)) => tracing::debug!(%upstream, error = %e, "forwarding failed"),
                Err(_) => tracing::debug!(%upstream, "forwarding timed out"),
            }
        }
        None
    }
}

/// A reply to `query` with its question and no records yet (our EDNS0 size if it used EDNS0).
fn empty_reply(query: &Message) -> Message {
    Message {
        header: reply_header(&query.header),
        questions: query.questions.clone(),
        edns: query.edns.map(|e| Edns {
            udp_size: OUR_UDP_SIZE,
            ext_rcode: 0,
            version: 0,
            dnssec_ok: e.dnssec_ok,
        }),
        ..Message::default()
    }
}

fn reply_header(query: &Header) -> Header {
    Header {
        id: query.id,
        qr: true,
        opcode: query.opcode,
        rd: query.rd,
        cd: query.cd,
        ra: true,
        ..Header::default()
    }
}

fn error_reply(mut reply: Message, rcode: u16, proto: Proto) -> Decision {
    reply.set_rcode(rcode);
    let limit = match proto {
        Proto::Udp => CLASSIC_UDP_SIZE,
        Proto::Tcp => 65535,
    };
    Decision::Reply {
        bytes: reply.encode(limit),
        source: Source::Server,
        rcode,
    }
}

/// The most a reply to `query` may take: 512 over UDP, or what the client's OPT advertises.
fn reply_limit(query: &Message, proto: Proto) -> usize {
    match proto {
        Proto::Tcp => 65535,
        Proto::Udp => query.edns.map_or(CLASSIC_UDP_SIZE, |e| {
            usize::from(e.udp_size).max(CLASSIC_UDP_SIZE)
        }),
    }
}

/// One query to one upstream over UDP, under a fresh random ID on a fresh port.
async fn exchange_udp(upstream: SocketAddr, packet: &[u8]) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(upstream).await?;
    let (mut out, original_id) = with_random_id(packet)?;
    let id = [out[0], out[1]];
    sock.send(&out).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let len = sock.recv(&mut buf).await?;
        let reply = &buf[..len];
        if len >= 12 && reply[..2] == id && reply[2] & 0x80 != 0 {
            out.clear();
            out.extend_from_slice(reply);
            out[..2].copy_from_slice(&original_id);
            return Ok(out);
        }
    }
}

async fn exchange_tcp(upstream: SocketAddr, packet: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    let (out, original_id) = with_random_id(packet)?;
    let mut framed = Vec::with_capacity(out.len() + 2);
    framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
    framed.extend_from_slice(&out);
    stream.write_all(&framed).await?;
    loop {
        let len = usize::from(stream.read_u16().await?);
        let mut reply = vec![0u8; len];
        stream.read_exact(&mut reply).await?;
        if len >= 12 && reply[..2] == out[..2] && reply[2] & 0x80 != 0 {
            reply[..2].copy_from_slice(&original_id);
            return Ok(reply);
        }
    }
}

fn with_random_id(packet: &[u8]) -> io::Result<(Vec<u8>, [u8; 2])> {
    if packet.len() < 12 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "short DNS message",
        ));
    }
    let mut out = packet.to_vec();
    let original = [out[0], out[1]];
    out[..2].copy_from_slice(&rand::random::<u16>().to_be_bytes());
    Ok((out, original))
}

/// The nameservers of a resolv.conf, without `skip` (our own address: forwarding to ourselves
/// would loop).
pub fn resolv_conf_nameservers(text: &str, skip: IpAddr) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let addr = words.next()?;
            let addr = addr.split('%').next()?; // fe80::1%eth0
            addr.parse::<IpAddr>().ok()
        })
        .filter(|ip| *ip != skip)
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Index, fixtures::*};
    use crate::wire::{Name, RData, TYPE_A, TYPE_SRV};

    fn config(upstreams: Vec<SocketAddr>) -> ServerConfig {
        ServerConfig {
            zone: Zone::new("cluster.local", "127.0.0.1".parse().unwrap()).unwrap(),
            upstreams,
            forward_timeout: Duration::from_millis(500),
        }
    }

    fn index() -> SharedIndex {
        let mut services = vec![
            cluster_ip("default", "web", "10.43.0.7", &[("http", "TCP", 80)]),
            headless("default", "big", &[("http", "TCP", 80)]),
            external("default", "ext", "example.com"),
        ];
        services.push(cluster_ip("kube-system", "kube-dns", "10.43.0.10", &[]));
        let eps: Vec<String> = (0..100).map(|i| format!("10.42.1.{i}")).collect();
        let eps: Vec<(&str, Option<&str>, Option<bool>)> =
            eps.iter().map(|ip| (ip.as_str(), None, None)).collect();
        let slices = [slice(
            "default",
            "big-1",
            "big",
            &eps,
            &[("http", "TCP", 80)],
        )];
        SharedIndex::new(Index::build(["default"], &services, &slices, 1))
    }

    /// Starts a server on 127.0.0.1 (a port free for both UDP and TCP); returns its address.
    async fn start(upstreams: Vec<SocketAddr>) -> SocketAddr {
        // The kernel picks a free UDP port; the same TCP port may be in use by another
        // process (CI saw EADDRINUSE), so pick again until both are ours.
        let mut tries = 0;
        let (udp, tcp, addr) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            match TcpListener::bind(addr).await {
                Ok(tcp) => break (udp, tcp, addr),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 50 => tries += 1,
                Err(e) => panic!("binding TCP {addr}: {e}"),
            }
        };
        let metrics = Arc::new(Metrics::new(format!("dns://{addr}")));
        tokio::spawn(serve(index(), config(upstreams), metrics, udp, Some(tcp)));
        addr
    }

    async fn ask_udp(server: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
        ask_udp_within(server, packet, Duration::from_secs(3)).await
    }

    async fn ask_udp_within(server: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(packet, server).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let got = tokio::time::timeout(wait, sock.recv(&mut buf)).await;
        let len = got.ok()?.ok()?;
        Some(buf[..len].to_vec())
    }

    async fn ask_tcp(server: SocketAddr, packet: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(server).await.unwrap();
        let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(packet);
        stream.write_all(&framed).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut reply = vec![0u8; usize::from(len)];
        stream.read_exact(&mut reply).await.unwrap();
        reply
    }

    fn q(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        wire::query(id, Name::from_dotted(name).unwrap(), qtype, edns).encode(512)
    }

    /// A fake upstream on 127.0.0.1 that answers every A query with 192.0.2.1 (UDP only).
    async fn fake_upstream() -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((len, peer)) = sock.recv_from(&mut buf).await {
                let Ok(mut m) = Message::decode(&buf[..len]) else {
                    continue;
                };
                m.header.qr = true;
                m.header.ra = true;
                let name = m.questions[0].name.clone();
                m.answers.push(wire::Record::new(
                    name,
                    60,
                    RData::A("192.0.2.1".parse().unwrap()),
                ));
                let _ = sock.send_to(&m.encode(512), peer).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn answers_cluster_names_over_udp_and_tcp() {
        let server = start(vec![]).await;
        let reply = ask_udp(server, &q(7, "web.default.svc.cluster.local", TYPE_A, None))
            .await
            .unwrap();
        let m = Message::decode(&reply).unwrap();
        assert_eq!(m.header.id, 7);
        assert!(m.header.qr && m.header.aa && m.header.rd);
        assert_eq!(m.answers[0].data, RData::A("10.43.0.7".parse().unwrap()));
        let reply = ask_tcp(
            server,
            &q(8, "nope.default.svc.cluster.local", TYPE_A, None),
        )
        .await;
        let m = Message::decode(&reply).unwrap();
        assert_eq!(m.rcode(), RCODE_NXDOMAIN);
        assert_eq!(m.authority.len(), 1);
    }

    #[tokio::test]
    async fn large_answers_truncate_over_udp_but_not_tcp() {
        let server = start(vec![]).await;
        let query = q(9, "big.default.svc.cluster.local", TYPE_SRV, None);
        let m = Message::decode(&ask_udp(server, &query).await.unwrap()).unwrap();
        assert!(m.header.tc);
        let m = Message::decode(&ask_tcp(server, &query).await).unwrap();
        assert!(!m.header.tc);
        assert_eq!(
            m.answers
                .iter()
                .filter(|r| r.data.rtype() == TYPE_SRV)
                .count(),
            100
        );
        // EDNS0 with a large buffer: all 100 A records fit in 4096.
        let query = q(10, "big.default.svc.cluster.local", TYPE_A, Some(4096));
        let reply = ask_udp(server, &query).await.unwrap();
        assert!(reply.len() > 512);
        let m = Message::decode(&reply).unwrap();
        assert!(!m.header.tc);
        assert_eq!(m.answers.len(), 100);
        assert!(m.edns.is_some());
    }

    #[tokio::test]
    async fn forwards_other_names_to_the_upstream() {
        let upstream = fake_upstream().await;
        let server = start(vec![upstream]).await;
        let reply = ask_udp(server, &q(0xbeef, "example.org", TYPE_A, None))
            .await
            .unwrap();
        let m = Message::decode(&reply).unwrap();
        assert_eq!(m.header.id, 0xbeef);
        assert_eq!(m.answers[0].data, RData::A("192.0.2.1".parse().unwrap()));
        // ExternalName: the CNAME, then the upstream's answer for its target.
        let reply = ask_udp(server, &q(3, "ext.default.svc.cluster.local", TYPE_A, None))
            .await
            .unwrap();
        let m = Message::decode(&reply).unwrap();
        assert_eq!(m.answers.len(), 2, "{m:?}");
        assert_eq!(
            m.answers[0].data,
            RData::Cname(Name::from_dotted("example.com").unwrap())
        );
        assert_eq!(m.answers[1].data, RData::A("192.0.2.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn forwarded_answers_are_cached() {
        // An upstream that answers once, then stays silent.
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let upstream = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            let Ok((len, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(mut m) = Message::decode(&buf[..len]) else {
                return;
            };
            m.header.qr = true;
            let name = m.questions[0].name.clone();
            m.answers.push(wire::Record::new(
                name,
                60,
                RData::A("192.0.2.9".parse().unwrap()),
            ));
            let _ = sock.send_to(&m.encode(512), peer).await;
            std::future::pending::<()>().await;
        });
        let server = start(vec![upstream]).await;
        for id in [1, 2] {
            let reply = ask_udp(server, &q(id, "once.example", TYPE_A, None))
                .await
                .unwrap();
            let m = Message::decode(&reply).unwrap();
            assert_eq!(m.header.id, id);
            assert_eq!(m.answers[0].data, RData::A("192.0.2.9".parse().unwrap()));
            if id == 2 {
                assert!(m.answers[0].ttl <= 30, "from the cache, capped at 30 s");
            }
        }
    }

    #[tokio::test]
    async fn forwarding_failure_is_servfail() {
        // An upstream that never answers (a bound socket nobody reads).
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = start(vec![silent.local_addr().unwrap()]).await;
        let reply = ask_udp(server, &q(5, "example.org", TYPE_A, None))
            .await
            .unwrap();
        assert_eq!(Message::decode(&reply).unwrap().rcode(), RCODE_SERVFAIL);
        // No upstream at all.
        let server = start(vec![]).await;
        let reply = ask_udp(server, &q(6, "example.org", TYPE_A, None))
            .await
            .unwrap();
        assert_eq!(Message::decode(&reply).unwrap().rcode(), RCODE_SERVFAIL);
    }

    #[tokio::test]
    async fn malformed_packets_get_formerr_or_nothing() {
        let server = start(vec![]).await;
        // Shorter than a header: dropped.
        let brief = Duration::from_millis(300);
        assert!(ask_udp_within(server, &[1, 2, 3], brief).await.is_none());
        // A pointer loop in the question: FORMERR with the query's ID.
        let mut bad = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        bad.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        let m = Message::decode(&ask_udp(server, &bad).await.unwrap()).unwrap();
        assert_eq!((m.header.id, m.rcode()), (0x1234, RCODE_FORMERR));
        // A response sent to the server: dropped (no reflection loops).
        let mut resp = q(1, "web.default.svc.cluster.local", TYPE_A, None);
        resp[2] |= 0x80;
        assert!(ask_udp_within(server, &resp, brief).await.is_none());
        // Two questions: FORMERR.
        let mut two = wire::query(2, Name::from_dotted("a.b").unwrap(), TYPE_A, None);
        two.questions.push(two.questions[0].clone());
        let m = Message::decode(&ask_udp(server, &two.encode(512)).await.unwrap()).unwrap();
        assert_eq!(m.rcode(), RCODE_FORMERR);
        // EDNS version 1: BADVERS.
        let mut v1 = wire::query(3, Name::from_dotted("a.b").unwrap(), TYPE_A, Some(1232));
        if let Some(e) = &mut v1.edns {
            e.version = 1;
        }
        let m = Message::decode(&ask_udp(server, &v1.encode(512)).await.unwrap()).unwrap();
        assert_eq!(m.rcode(), RCODE_BADVERS);
        // Still serving.
        let reply = ask_udp(server, &q(4, "web.default.svc.cluster.local", TYPE_A, None)).await;
        assert!(reply.is_some());
    }

    #[test]
    fn resolv_conf_skips_our_own_address() {
        let text = "# generated\nsearch example.com\nnameserver 10.43.0.10\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\noptions ndots:5\n";
        let got = resolv_conf_nameservers(text, "10.43.0.10".parse().unwrap());
        assert_eq!(
            got,
            [
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}
