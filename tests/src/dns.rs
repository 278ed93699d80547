//! A tiny authoritative DNS server on 127.0.0.1 (UDP and TCP on the same port) whose records a test changes while
//! it runs. Messages are encoded by hand (RFC 1035 §4, SRV RDATA per RFC 2782): a query's question is echoed,
//! SRV and A answers come from the zone, a name that exists without records of the asked type is NODATA, an
//! unknown name is NXDOMAIN; negative answers carry an SOA whose minimum (1 s) bounds negative caching. EDNS
//! (an OPT record in the query's additional section, which hickory sends by default) is noted and otherwise
//! ignored: answers carry no OPT record, which RFC 6891 §7 allows. [`DnsServer::set_failing`] makes it answer
//! SERVFAIL to everything, a transient failure.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const TYPE_SRV: u16 = 33;
const TYPE_OPT: u16 = 41;
/// TTL of every answer: short, so changes show on the next lookup after a second.
const TTL: u32 = 1;

/// The records served: names are lower case without the trailing dot.
#[derive(Debug, Default, Clone)]
pub struct Zone {
    /// SRV name → (target, port) list.
    pub srv: BTreeMap<String, Vec<(String, u16)>>,
    /// Host name → IPv4 addresses.
    pub a: BTreeMap<String, Vec<Ipv4Addr>>,
}

/// One query the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLog {
    pub name: String,
    pub qtype: u16,
    pub transport: &'static str,
    /// The query carried an EDNS OPT record.
    pub edns: bool,
    /// 0 (NOERROR), 2 (SERVFAIL) or 3 (NXDOMAIN).
    pub rcode: u16,
    pub answers: usize,
}

/// A running DNS server; stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    log: Arc<Mutex<Vec<QueryLog>>>,
    failing: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    /// Binds UDP and TCP on one free port of 127.0.0.1 and starts answering.
    pub async fn start() -> Result<DnsServer> {
        let mut bound = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0").await?;
            let addr = udp.local_addr()?;
            if let Ok(tcp) = TcpListener::bind(addr).await {
                bound = Some((udp, tcp, addr));
                break;
            }
        }
        let Some((udp, tcp, addr)) = bound else {
            bail!("no port of 127.0.0.1 was free for both UDP and TCP");
        };
        let zone = Arc::new(Mutex::new(Zone::default()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicBool::new(false));
        let (z, l, fl) = (zone.clone(), log.clone(), failing.clone());
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                if let Some(resp) = respond(&buf[..n], &z, &l, "udp", fl.load(Ordering::SeqCst)) {
                    let _ = udp.send_to(&resp, peer).await;
                }
            }
        });
        let (z, l, fl) = (zone.clone(), log.clone(), failing.clone());
        let tcp_task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = tcp.accept().await {
                let (z, l, fl) = (z.clone(), l.clone(), fl.clone());
                tokio::spawn(async move {
                    loop {
                        let Ok(len) = sock.read_u16().await else {
                            return;
                        };
                        let mut msg = vec![0u8; usize::from(len)];
                        if sock.read_exact(&mut msg).await.is_err() {
                            return;
                        }
                        let Some(resp) = respond(&msg, &z, &l, "tcp", fl.load(Ordering::SeqCst))
                        else {
                            return;
                        };
                        let Ok(rlen) = u16::try_from(resp.len()) else {
                            return;
                        };
                        if sock.write_u16(rlen).await.is_err()
                            || sock.write_all(&resp).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Ok(DnsServer {
            addr,
            zone,
            log,
            failing,
            tasks: vec![udp_task, tcp_task],
        })
    }

    /// Replaces the SRV records of `name` (an empty list leaves the name existing with no SRV records).
    pub fn set_srv(&self, name: &str, targets: &[(&str, u16)]) {
        if let Ok(mut z) = self.zone.lock() {
            z.srv.insert(
                norm(name),
                targets.iter().map(|(t, p)| (norm(t), *p)).collect(),
            );
        }
    }

    /// Replaces the A records of `name`; `None` removes the name (NXDOMAIN).
    pub fn set_a(&self, name: &str, ips: Option<&[Ipv4Addr]>) {
        if let Ok(mut z) = self.zone.lock() {
            match ips {
                Some(ips) => {
                    z.a.insert(norm(name), ips.to_vec());
                }
                None => {
                    z.a.remove(&norm(name));
                }
            }
        }
    }

    /// While set, every query is answered SERVFAIL: the server is there but cannot answer (a transient failure,
    /// unlike NXDOMAIN).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Every query answered so far.
    pub fn queries(&self) -> Vec<QueryLog> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads an uncompressed name at `at`; returns (dotted name, offset after it).
fn read_name(b: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*b.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len >= 64 {
            return None; // compression pointers do not occur in questions
        }
        labels.push(String::from_utf8_lossy(b.get(at..at + len)?).into_owned());
        at += len;
    }
    Some((labels.join("."), at))
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    for l in name.split('.').filter(|l| !l.is_empty()) {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
}

/// A resource record: owner, type, class IN, TTL, RDATA.
fn put_rr(out: &mut Vec<u8>, owner: &[u8], rtype: u16, rdata: &[u8]) {
    out.extend_from_slice(owner);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&TTL.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

fn respond(
    q: &[u8],
    zone: &Mutex<Zone>,
    log: &Mutex<Vec<QueryLog>>,
    transport: &'static str,
    failing: bool,
) -> Option<Vec<u8>> {
    if q.len() < 12 || be16(q, 4)? != 1 || q[2] & 0x80 != 0 {
        return None;
    }
    let flags = be16(q, 2)?;
    let (qname, after) = read_name(q, 12)?;
    let qtype = be16(q, after)?;
    let end_q = after + 4;
    let question = q.get(12..end_q)?;
    let edns = be16(q, 10)? > 0 && q.get(end_q) == Some(&0) && be16(q, end_q + 1) == Some(TYPE_OPT);
    let name = norm(&qname);
    let zone = zone.lock().ok()?.clone();

    // Answers point at the question's name (offset 12).
    let owner = [0xC0u8, 0x0C];
    let mut answers = Vec::new();
    let mut n = 0usize;
    match qtype {
        TYPE_SRV => {
            for (target, port) in zone.srv.get(&name).into_iter().flatten() {
                let mut rdata = Vec::new();
                rdata.extend_from_slice(&10u16.to_be_bytes()); // priority
                rdata.extend_from_slice(&10u16.to_be_bytes()); // weight
                rdata.extend_from_slice(&port.to_be_bytes());
                put_name(&mut rdata, target);
                put_rr(&mut answers, &owner, TYPE_SRV, &rdata);
                n += 1;
            }
        }
        TYPE_A => {
            for ip in zone.a.get(&name).into_iter().flatten() {
                put_rr(&mut answers, &owner, TYPE_A, &ip.octets());
                n += 1;
            }
        }
        _ => {}
    }
    let exists = zone.srv.contains_key(&name) || zone.a.contains_key(&name);
    let rcode: u16 = if failing {
        answers.clear();
        n = 0;
        2
    } else if exists {
        0
    } else {
        3
    };

    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&q[0..2]);
    // QR, the query's opcode, AA, the query's RD, RA, rcode.
    let rflags = 0x8000 | (flags & 0x7800) | 0x0400 | (flags & 0x0100) | 0x0080 | rcode;
    out.extend_from_slice(&rflags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&u16::from(n == 0 && !failing).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(question);
    out.extend_from_slice(&answers);
    if n == 0 && !failing {
        // SOA of the zone (the name's last label), minimum 1 s: bounds how long a resolver caches "no records".
        let apex = name.rsplit('.').next().unwrap_or_default().to_owned();
        let mut owner = Vec::new();
        put_name(&mut owner, &apex);
        let mut rdata = Vec::new();
        put_name(&mut rdata, &format!("ns.{apex}"));
        put_name(&mut rdata, &format!("hostmaster.{apex}"));
        for v in [1u32, 60, 60, 60, 1] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        put_rr(&mut out, &owner, TYPE_SOA, &rdata);
    }
    if let Ok(mut l) = log.lock() {
        l.push(QueryLog {
            name,
            qtype,
            transport,
            edns,
            rcode,
            answers: n,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        put_name(&mut q, name);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        if edns {
            q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        }
        q
    }

    fn rcode(r: &[u8]) -> Option<u16> {
        Some(be16(r, 2)? & 0xf)
    }

    #[test]
    fn answers_srv_a_nodata_nxdomain_and_servfail() -> Result<()> {
        use anyhow::Context;
        let zone = Mutex::new(Zone::default());
        let log = Mutex::new(Vec::new());
        if let Ok(mut z) = zone.lock() {
            z.srv
                .insert("_grpc._tcp.s.test".into(), vec![("h.test".into(), 10901)]);
            z.a.insert("h.test".into(), vec![Ipv4Addr::LOCALHOST]);
        }
        let ask = |name: &str, qtype: u16, edns: bool, failing: bool| {
            respond(&query(name, qtype, edns), &zone, &log, "udp", failing).context("no answer")
        };
        let r = ask("_grpc._tcp.s.test.", TYPE_SRV, true, false)?;
        assert_eq!(&r[0..2], &[0x12, 0x34], "id echoed");
        assert_eq!(
            be16(&r, 2).map(|f| f & 0x800f),
            Some(0x8000),
            "response, NOERROR"
        );
        assert_eq!(be16(&r, 6), Some(1), "one answer");
        assert!(
            r.windows(2).any(|w| w == 10901u16.to_be_bytes()),
            "port in SRV RDATA"
        );
        let r = ask("h.test", TYPE_A, false, false)?;
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 1]);
        let r = ask("h.test", 28, false, false)?;
        assert_eq!(
            (rcode(&r), be16(&r, 6), be16(&r, 8)),
            (Some(0), Some(0), Some(1)),
            "NODATA + SOA"
        );
        let r = ask("nope.test", TYPE_A, false, false)?;
        assert_eq!(rcode(&r), Some(3), "NXDOMAIN");
        let r = ask("h.test", TYPE_A, false, true)?;
        assert_eq!(
            (rcode(&r), be16(&r, 6), be16(&r, 8)),
            (Some(2), Some(0), Some(0)),
            "SERVFAIL"
        );
        let l = log.lock().map(|l| l.clone()).unwrap_or_default();
        assert!(l[0].edns && !l[1].edns);
        Ok(())
    }
}
