//! Blades on other "machines": a control-plane namespace and two blade
//! namespaces joined by veth, cmgrd in the first syncing fpd in the others
//! over TCP with mutual TLS (certificates made at run time). Strangers (no
//! certificate, a certificate from another CA, a replay of a captured
//! session, plain FPC on the TLS port) are refused, logged and counted,
//! the tables untouched; a capture of the TLS streams holds no route and
//! no SA key in clear, while a capture of a plain loopback blade, in the
//! same run, does (so the search would find them).

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fpc::{Endpoint, Hello, Message, Object, Op, QueryClient, Role, TlsFiles, HEADER_LEN, VERSION};
use fpsync_tests::pki::{tls_args, Pki};
use fpsync_tests::{bin, in_netns, pcap, unique, wait_until, Daemon, Netns, TempDir};
use instance::features::Features;
use instance::netlink::xfrm::build;

const PORT: u16 = 7700;
const SYNC: Duration = Duration::from_secs(10);
/// The SA's encryption key: bytes that are easy to look for.
const SA_KEY: &[u8; 16] = b"fpsync-SA-key-16";
const SA_AUTH_KEY: &[u8; 32] = b"fpsync-SA-authentication-key-32b";

/// The control plane and its blades.
struct Machines {
    dir: TempDir,
    cp: Netns,
    blades: Vec<Netns>,
}

/// The blade `i`'s address (1-based), on its veth to the control plane.
fn blade_ip(i: usize) -> String {
    format!("10.91.{i}.2")
}

fn blade_addr(i: usize) -> SocketAddrV4 {
    SocketAddrV4::new(blade_ip(i).parse().unwrap(), PORT)
}

fn unix(dir: &TempDir, i: usize) -> Endpoint {
    Endpoint::Unix(dir.path.join(format!("fpd{i}.sock")))
}

impl Machines {
    fn new(tag: &str) -> Machines {
        let m = Machines {
            dir: TempDir::new(tag),
            cp: Netns::new(&format!("{tag}-cp")),
            blades: (1..=2)
                .map(|i| Netns::new(&format!("{tag}-b{i}")))
                .collect(),
        };
        // Link-local addresses at once (no DAD), so that the tables do not
        // change under the comparisons below.
        for ns in std::iter::once(&m.cp).chain(&m.blades) {
            fpsync_tests::sh(&[
                "ip",
                "netns",
                "exec",
                &ns.name,
                "sysctl",
                "-qw",
                "net.ipv6.conf.default.accept_dad=0",
            ]);
        }
        for (i, b) in m.blades.iter().enumerate() {
            let i = i + 1;
            let (cp_if, b_if) = (format!("tob{i}"), "tocp".to_string());
            m.cp.ip(&[
                "link", "add", &cp_if, "type", "veth", "peer", "name", &b_if, "netns", &b.name,
            ]);
            m.cp.ip(&["addr", "add", &format!("10.91.{i}.1/24"), "dev", &cp_if]);
            m.cp.ip(&["link", "set", &cp_if, "up"]);
            b.ip(&["addr", "add", &format!("{}/24", blade_ip(i)), "dev", &b_if]);
            b.ip(&["link", "set", &b_if, "up"]);
        }
        assert!(wait_until(SYNC, || {
            let out = m.cp.ip(&["-6", "addr", "show", "scope", "link"]);
            out.matches("inet6 fe80").count() == 2 && !out.contains("tentative")
        }));
        m
    }

    /// cmgrd's arguments: syncing the control plane to both blades over
    /// TLS as `files`.
    fn cmgrd_args(&self, instance: u32, files: &TlsFiles) -> Vec<String> {
        let mut args = vec![
            "-F".to_string(),
            "-I".into(),
            instance.to_string(),
            "--netns".into(),
            self.cp.name.clone(),
        ];
        for i in 1..=self.blades.len() {
            args.extend(["--blade".into(), format!("{i}=tcp:{}", blade_addr(i))]);
        }
        args.extend(tls_args(files));
        args
    }

    /// fpd for blade `i` in its namespace, on TCP with TLS and on a Unix
    /// socket (for the test's own queries).
    fn start_fpd(&self, i: usize, files: &TlsFiles) -> Daemon {
        let mut args = vec![
            "--blade".to_string(),
            i.to_string(),
            "--netns".into(),
            self.blades[i - 1].name.clone(),
            "--listen".into(),
            format!("tcp:{}", blade_addr(i)),
            "--listen".into(),
            unix(&self.dir, i).to_string(),
        ];
        args.extend(tls_args(files));
        let fpd = Daemon::spawn(
            &bin("fpd"),
            &args,
            self.dir.path.join(format!("fpd{i}.log")),
        );
        let ep = unix(&self.dir, i);
        assert!(
            wait_until(SYNC, || QueryClient::connect(
                &ep,
                "test",
                Duration::from_secs(1)
            )
            .is_ok()),
            "fpd{i} did not start: {}",
            fpd.log()
        );
        fpd
    }
}

fn counter(ep: &Endpoint, name: &str) -> u64 {
    QueryClient::connect(ep, "test", Duration::from_secs(5))
        .and_then(|mut c| c.counters())
        .expect("fpd counters")
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no counter {name}"))
}

fn objects(ep: &Endpoint) -> Vec<Object> {
    QueryClient::connect(ep, "test", Duration::from_secs(5))
        .and_then(|mut c| c.dump())
        .expect("fpd dump")
}

fn dump(ep: &Endpoint) -> Vec<String> {
    let mut objects: Vec<String> = objects(ep).iter().map(|o| o.to_string()).collect();
    objects.sort();
    objects
}

fn assert_in_sync(cp: &Netns, ep: &Endpoint, logs: &[&Daemon]) {
    let diffs = instance::check::check_until(Some(&cp.name), ep, &Features::default(), SYNC)
        .unwrap_or_else(|e| vec![format!("check failed: {e:?}")]);
    if !diffs.is_empty() {
        let logs: Vec<String> = logs.iter().map(|d| fpsync_tests::tail(&d.log())).collect();
        panic!(
            "{} differences on {ep}:\n{}\n--- logs:\n{}",
            diffs.len(),
            diffs.join("\n"),
            logs.join("\n---\n")
        );
    }
}

/// What a stranger got from a blade: never an FPC frame.
#[derive(Debug)]
#[allow(dead_code)] // the fields are for the assertion's message
enum Outcome {
    /// The connection failed or closed without an FPC frame (TLS records
    /// and alerts, for a replayed handshake).
    Refused(String),
    /// An FPC frame came back: the blade talked to the stranger.
    Answered(Vec<u8>),
}

/// A sync Hello for blade 1 and a Batch deleting `victim`: what a stranger
/// would send to take the blade over.
fn takeover_frames(victim: &Object) -> Vec<u8> {
    let mut out = Vec::new();
    Message::Hello(Hello {
        version: VERSION,
        role: Role::Sync,
        instance: 1,
        blade: 1,
        capabilities: fpc::all_capabilities(),
        election_id: 0,
        name: "stranger".into(),
    })
    .emit(1, &mut out);
    Message::SyncBegin { generation: 99 }.emit(2, &mut out);
    Message::Batch(vec![(Op::Delete, victim.clone())]).emit(3, &mut out);
    Message::SyncEnd { generation: 99 }.emit(4, &mut out);
    out
}

/// Reads what comes back until the end, an error or 3 s.
fn answer(stream: &mut impl Read) -> Outcome {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if got.is_empty() => return Outcome::Refused(e.to_string()),
            Err(_) => break,
        }
    }
    let header = got
        .get(..HEADER_LEN)
        .and_then(|h| <&[u8; HEADER_LEN]>::try_from(h).ok());
    match header.map(fpc::parse_header) {
        Some(Ok(_)) => Outcome::Answered(got),
        _ => Outcome::Refused(format!(
            "closed after {} bytes, no FPC frame among them",
            got.len()
        )),
    }
}

/// A TLS client that trusts the blades' CA and presents `identity` (or no
/// certificate), then tries to take blade 1 over.
fn tls_stranger(ca: &std::path::Path, identity: Option<&TlsFiles>, frames: &[u8]) -> Outcome {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(f) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&f.cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(&f.key).unwrap(),
            )
            .unwrap(),
    };
    let addr = SocketAddr::V4(blade_addr(1));
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    if let Err(e) = tls.write_all(frames).and_then(|_| tls.flush()) {
        return Outcome::Refused(e.to_string());
    }
    answer(&mut tls)
}

/// Plain bytes to blade 1's TLS port.
fn plain_stranger(bytes: &[u8]) -> Outcome {
    let mut tcp =
        TcpStream::connect_timeout(&SocketAddr::V4(blade_addr(1)), Duration::from_secs(3)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    if let Err(e) = tcp.write_all(bytes) {
        return Outcome::Refused(e.to_string());
    }
    answer(&mut tcp)
}

/// tcpdump writing `filter`'s packets on `ifname` in `ns` to `file`.
fn capture(
    ns: &Netns,
    ifname: &str,
    filter: &str,
    file: &std::path::Path,
    log: std::path::PathBuf,
) -> Daemon {
    let args: Vec<String> = [
        "netns",
        "exec",
        &ns.name,
        "tcpdump",
        "-i",
        ifname,
        "-n",
        "-U",
        "--immediate-mode",
        "-Z",
        "root",
        "-s",
        "0",
        "-w",
        file.to_str().unwrap(),
        filter,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let td = Daemon::spawn(std::path::Path::new("/usr/sbin/ip"), &args, log);
    assert!(
        wait_until(SYNC, || td.log().contains("listening on")),
        "tcpdump did not start: {}",
        td.log()
    );
    td
}

/// Stops tcpdump (SIGINT flushes its file) and reads the capture.
fn stop_capture(mut td: Daemon, file: &std::path::Path) -> Vec<pcap::Segment> {
    // Let the last packets reach the file.
    std::thread::sleep(Duration::from_millis(300));
    td.signal(libc::SIGINT);
    let _ = td.child.wait();
    pcap::segments(&std::fs::read(file).unwrap())
}

/// The SA cmgrd is told of (this kernel has no ESP: from a fixture),
/// with keys that are easy to look for.
fn sa() -> fpc::XfrmSa {
    let mut sa = fpsync_tests::fixtures::sa(0x7001);
    sa.algos[0].key = SA_KEY.to_vec();
    sa.algos[1].key = SA_AUTH_KEY.to_vec();
    sa
}

#[test]
fn blades_over_mutual_tls_refuse_strangers_and_show_nothing_in_clear() {
    let m = Machines::new("tls");
    let pki = Pki::new(&m.dir.path, "fpsync");
    let blade_files: Vec<TlsFiles> = (1..=2)
        .map(|i| pki.issue(&format!("blade{i}"), &[&blade_ip(i)]))
        .collect();
    let cmgr_files = pki.issue("cmgr", &[]);
    let check_files = pki.issue("check", &[]);
    let other = Pki::new(&m.dir.path, "other");
    let other_files = other.issue("intruder", &[]);
    let fpds: Vec<Daemon> = (1..=2)
        .map(|i| m.start_fpd(i, &blade_files[i - 1]))
        .collect();
    // A third blade on the control plane's own loopback, plain TCP (the
    // flag and a loopback address): what the captures are compared with.
    let plain_port = 7703;
    let plain_unix = unix(&m.dir, 3);
    let plain_fpd = Daemon::spawn(
        &bin("fpd"),
        &[
            "--blade".to_string(),
            "3".into(),
            "--netns".into(),
            m.cp.name.clone(),
            "--allow-plain-tcp".into(),
            "--listen".into(),
            format!("tcp:127.0.0.1:{plain_port}"),
            "--listen".into(),
            plain_unix.to_string(),
        ],
        m.dir.path.join("fpd3.log"),
    );
    assert!(wait_until(SYNC, || QueryClient::connect(
        &plain_unix,
        "t",
        Duration::from_secs(1)
    )
    .is_ok()));

    let pcap_tls = m.dir.path.join("tls.pcap");
    let pcap_plain = m.dir.path.join("plain.pcap");
    let filter = format!("tcp port {PORT}");
    let td_tls = capture(
        &m.cp,
        "tob1",
        &filter,
        &pcap_tls,
        m.dir.path.join("td1.log"),
    );
    let td_plain = capture(
        &m.cp,
        "lo",
        &format!("tcp port {plain_port}"),
        &pcap_plain,
        m.dir.path.join("td3.log"),
    );

    let route = "203.0.113.77/32 via 10.91.1.2";
    m.cp.ip(&["route", "add", "203.0.113.77/32", "via", "10.91.1.2"]);
    let instance = unique() + 3_000_000;
    let mut args = m.cmgrd_args(instance, &cmgr_files);
    args.extend([
        "--blade".into(),
        format!("3=tcp:127.0.0.1:{plain_port}"),
        "--allow-plain-tcp".into(),
    ]);
    let cmgrd = Daemon::spawn(&bin("cmgrd"), &args, m.dir.path.join("cmgrd.log"));
    let all_logs = [&cmgrd, &fpds[0], &fpds[1]];
    for i in 1..=2 {
        assert_in_sync(&m.cp, &unix(&m.dir, i), &all_logs);
    }
    assert_in_sync(&m.cp, &plain_unix, &all_logs);
    // The check itself, as a TLS client of its own, from the control plane.
    for i in 1..=2 {
        let mut check = Command::new("ip");
        check
            .args(["netns", "exec", &m.cp.name])
            .arg(bin("fpsync-check"))
            .args([
                "--wait",
                "10",
                "--netns",
                &m.cp.name,
                "--fpc",
                &format!("tcp:{}", blade_addr(i)),
            ])
            .args(tls_args(&check_files));
        let out = check.output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "fpsync-check over TLS to blade {i}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Without the TLS files the check refuses to dial, saying why.
    let out = Command::new("ip")
        .args(["netns", "exec", &m.cp.name])
        .arg(bin("fpsync-check"))
        .args(["--fpc", &format!("tcp:{}", blade_addr(1))])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs TLS: give --tls-cert"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An SA, with its key, reaches every blade.
    let sa = sa();
    let fixture = m.dir.path.join("sa.xfrm");
    std::fs::write(&fixture, build::new_sa(&sa, None, false)).unwrap();
    let console = std::path::PathBuf::from(format!("/tmp/.cmgrd{instance}"));
    let answer = fpsync_tests::console(
        &console,
        &format!("netlink replay xfrm {}", fixture.display()),
    );
    assert!(answer.starts_with("replayed 1 netlink"), "{answer}");
    for ep in [unix(&m.dir, 1), unix(&m.dir, 2), plain_unix.clone()] {
        assert!(
            wait_until(SYNC, || objects(&ep)
                .iter()
                .any(|o| matches!(o, Object::XfrmSa(s) if s.spi == 0x7001))),
            "no SA on {ep}: {:?}",
            dump(&ep)
        );
    }
    let segments = stop_capture(td_tls, &pcap_tls);
    let plain_segments = stop_capture(td_plain, &pcap_plain);

    // What the route and the SA look like on the wire: their FPC encoding.
    let b1 = unix(&m.dir, 1);
    let route_obj = objects(&b1)
        .into_iter()
        .find(|o| matches!(o, Object::Route(r) if r.dst.to_string() == "203.0.113.77"))
        .unwrap_or_else(|| panic!("no route {route} in fpd1"));
    let encoding = |o: &Object| {
        let mut frame = Vec::new();
        Message::Batch(vec![(Op::Add, o.clone())]).emit(0, &mut frame);
        frame[HEADER_LEN + 5..].to_vec()
    };
    let route_bytes = encoding(&route_obj);
    let sa_bytes = encoding(&Object::XfrmSa(sa.clone()));
    let all = |segs: &[pcap::Segment]| -> Vec<u8> {
        segs.iter()
            .flat_map(|s| s.payload.iter().copied())
            .collect()
    };
    let (tls_bytes, plain_bytes) = (all(&segments), all(&plain_segments));
    assert!(
        tls_bytes.len() > 1000,
        "little captured: {} bytes in {} segments; tcpdump: {}",
        tls_bytes.len(),
        segments.len(),
        std::fs::read_to_string(m.dir.path.join("td1.log")).unwrap_or_default()
    );
    // The search finds them in clear on the plain loopback blade...
    assert!(
        pcap::contains(&plain_bytes, &route_bytes),
        "the route is not in the plain capture"
    );
    assert!(
        pcap::contains(&plain_bytes, SA_KEY),
        "the SA key is not in the plain capture"
    );
    assert!(pcap::contains(&plain_bytes, &sa_bytes));
    // ...and not over TLS.
    assert!(
        !pcap::contains(&tls_bytes, &route_bytes),
        "the route crosses in clear"
    );
    assert!(
        !pcap::contains(&tls_bytes, &[203, 0, 113, 77]),
        "the route's address crosses in clear"
    );
    assert!(
        !pcap::contains(&tls_bytes, SA_KEY),
        "the SA key crosses in clear"
    );
    assert!(!pcap::contains(&tls_bytes, &SA_KEY[..8]));
    assert!(pcap::contains(&plain_bytes, SA_AUTH_KEY));
    assert!(!pcap::contains(&tls_bytes, &SA_AUTH_KEY[..8]));

    // cmgrd's stream to blade 1, as captured, for the replay.
    let client = segments
        .iter()
        .find(|s| s.syn && s.dst == blade_addr(1))
        .expect("cmgrd's SYN to blade 1")
        .src;
    let captured = pcap::stream(&segments, client, blade_addr(1));
    assert!(captured.len() > 500, "captured {} bytes", captured.len());

    // The tables as they are once tcpdump's capture filters are gone.
    for i in 1..=2 {
        assert!(wait_until(SYNC, || !dump(&unix(&m.dir, i))
            .iter()
            .any(|o| o.contains("capture filter"))));
    }
    let before: Vec<Vec<String>> = (1..=2).map(|i| dump(&unix(&m.dir, i))).collect();
    let refused_before = counter(&b1, "refused_tls");
    let takeover = takeover_frames(&route_obj);
    let strangers: Vec<(&str, Outcome)> = in_netns(&m.cp.name, || {
        vec![
            ("no certificate", tls_stranger(&pki.ca, None, &takeover)),
            (
                "another CA's certificate",
                tls_stranger(&pki.ca, Some(&other_files), &takeover),
            ),
            (
                "a replay of cmgrd's captured session",
                plain_stranger(&captured),
            ),
            ("plain FPC on the TLS port", plain_stranger(&takeover)),
        ]
    });
    for (who, outcome) in &strangers {
        assert!(matches!(outcome, Outcome::Refused(_)), "{who}: {outcome:?}");
    }
    assert!(
        wait_until(SYNC, || counter(&b1, "refused_tls") == refused_before + 4),
        "refused_tls {} (was {refused_before})",
        counter(&b1, "refused_tls")
    );
    let log = fpds[0].log();
    assert!(
        log.contains("refusing the connection: TLS handshake failed"),
        "{log}"
    );
    // The tables are untouched, the owner still cmgrd.
    std::thread::sleep(Duration::from_millis(300));
    let after: Vec<Vec<String>> = (1..=2).map(|i| dump(&unix(&m.dir, i))).collect();
    assert_eq!(before, after);
    assert_eq!(counter(&b1, "sync_connected"), 1);
    // The SA goes (Linux has none to compare it with), then Linux and
    // the blades compare equal.
    std::fs::write(&fixture, build::del_sa(&sa)).unwrap();
    let answer = fpsync_tests::console(
        &console,
        &format!("netlink replay xfrm {}", fixture.display()),
    );
    assert!(answer.starts_with("replayed 1 netlink"), "{answer}");
    for i in 1..=2 {
        assert_in_sync(&m.cp, &unix(&m.dir, i), &all_logs);
    }
    // And cmgrd still syncs over TLS.
    m.cp.ip(&["route", "add", "203.0.113.78/32", "via", "10.91.2.2"]);
    for i in 1..=2 {
        assert_in_sync(&m.cp, &unix(&m.dir, i), &all_logs);
    }
    drop(plain_fpd);
}

#[test]
fn certificate_file_errors_are_one_line_naming_the_file() {
    let dir = TempDir::new("tls-files");
    let pki = Pki::new(&dir.path, "f");
    let good = pki.issue("blade", &["127.0.0.1"]);
    let junk = dir.path.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let missing = dir.path.join("missing.pem");
    let other = pki.issue("other", &[]);
    let cases: Vec<(TlsFiles, String)> = vec![
        (
            TlsFiles {
                cert: missing.clone(),
                ..good.clone()
            },
            format!(
                "{}: cannot read it: No such file or directory (os error 2)",
                missing.display()
            ),
        ),
        (
            TlsFiles {
                cert: junk.clone(),
                ..good.clone()
            },
            format!(
                "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                junk.display()
            ),
        ),
        (
            TlsFiles {
                key: good.cert.clone(),
                ..good.clone()
            },
            format!(
                "{}: no PEM private key (PKCS#8, RSA or EC PRIVATE KEY) in it",
                good.cert.display()
            ),
        ),
        (
            TlsFiles {
                ca: junk.clone(),
                ..good.clone()
            },
            format!(
                "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                junk.display()
            ),
        ),
        (
            TlsFiles {
                key: other.key.clone(),
                ..good.clone()
            },
            format!(
                "{}: cannot be used with the certificate {}: ",
                other.key.display(),
                good.cert.display()
            ),
        ),
    ];
    let port = 20_000 + unique() % 20_000;
    for (files, want) in cases {
        let mut args = vec![
            "--blade".to_string(),
            "1".into(),
            "--listen".into(),
            format!("tcp:127.0.0.1:{port}"),
        ];
        args.extend(tls_args(&files));
        let out = Command::new(bin("fpd"))
            .args(&args)
            .env("FPSYNC_NO_JOURNAL", "1")
            .env("FPSYNC_LOG", "error")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr.lines().last().unwrap_or_default();
        assert!(!out.status.success());
        assert!(
            line.starts_with(&format!("fpd: {want}")),
            "want {want:?}, got {stderr:?}"
        );
        let mut args = vec![
            "-F".to_string(),
            "--blade".into(),
            format!("1=tcp:127.0.0.1:{port}"),
        ];
        args.extend(tls_args(&files));
        let out = Command::new(bin("cmgrd")).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("cmgrd: {want}")),
            "want {want:?}, got {stderr:?}"
        );
    }
}

/// Whether blade `blade` is connected, as cmgrd's `show queue` says.
fn connected(console: &std::path::Path, blade: usize) -> bool {
    let out = fpsync_tests::console(console, "show queue");
    let section = out
        .split("Queue information")
        .find(|s| s.starts_with(&format!(" (blade {blade} ")))
        .unwrap_or_else(|| panic!("no blade {blade} in {out}"))
        .to_owned();
    section.contains("- connected: 1")
}

#[test]
fn a_cut_link_is_detected_then_healed_and_resynced() {
    let m = Machines::new("cut");
    let pki = Pki::new(&m.dir.path, "fpsync");
    let fpds: Vec<Daemon> = (1..=2)
        .map(|i| m.start_fpd(i, &pki.issue(&format!("blade{i}"), &[&blade_ip(i)])))
        .collect();
    let instance = unique() + 3_500_000;
    let args = m.cmgrd_args(instance, &pki.issue("cmgr", &[]));
    let cmgrd = Daemon::spawn(&bin("cmgrd"), &args, m.dir.path.join("cmgrd.log"));
    let logs = [&cmgrd, &fpds[0], &fpds[1]];
    let console = std::path::PathBuf::from(format!("/tmp/.cmgrd{instance}"));
    for i in 1..=2 {
        assert_in_sync(&m.cp, &unix(&m.dir, i), &logs);
    }
    let b1 = unix(&m.dir, 1);
    let connects = || cmgrd.log().matches("connected to fast path").count();
    let before = connects();

    // Cut blade 1 off: its FPC port drops everything, both ways.
    let cut = format!(
        "table inet fpsync_cut {{\n chain in {{ type filter hook input priority 0; tcp dport {PORT} drop; }}\n chain out {{ type filter hook output priority 0; tcp sport {PORT} drop; }}\n}}\n"
    );
    let rules = m.dir.path.join("cut.nft");
    std::fs::write(&rules, cut).unwrap();
    let b1ns = &m.blades[0].name;
    fpsync_tests::sh(&[
        "ip",
        "netns",
        "exec",
        b1ns,
        "nft",
        "-f",
        rules.to_str().unwrap(),
    ]);
    let start = std::time::Instant::now();
    // Routes change meanwhile.
    for n in 0..40 {
        m.cp.ip(&[
            "route",
            "add",
            &format!("198.51.{n}.0/24"),
            "via",
            "10.91.1.2",
        ]);
        if n % 4 == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    m.cp.ip(&["route", "del", "198.51.3.0/24"]);
    // Both sides take the silent peer for gone within a few seconds.
    assert!(
        wait_until(Duration::from_secs(9), || !connected(&console, 1)),
        "blade 1 still shown connected: {}",
        cmgrd.log()
    );
    let detected = start.elapsed();
    assert!(connected(&console, 2), "blade 2 should stay connected");
    assert!(cmgrd.log().contains("taken for gone"), "{}", cmgrd.log());
    assert!(
        wait_until(Duration::from_secs(5), || counter(&b1, "peer_timeouts")
            == 1),
        "{}",
        fpds[0].log()
    );
    assert_eq!(counter(&b1, "sync_connected"), 0);
    // Blade 2 followed; blade 1 is behind.
    assert_in_sync(&m.cp, &unix(&m.dir, 2), &logs);
    assert!(!dump(&b1).iter().any(|o| o.contains("198.51.39.0/24")));
    std::thread::sleep(Duration::from_secs(10).saturating_sub(start.elapsed()));
    assert!(!connected(&console, 1));

    // Healed: reconnected (with back-off, at most 2 s apart), resynced.
    fpsync_tests::sh(&[
        "ip",
        "netns",
        "exec",
        b1ns,
        "nft",
        "delete",
        "table",
        "inet",
        "fpsync_cut",
    ]);
    let healed = std::time::Instant::now();
    assert!(wait_until(Duration::from_secs(10), || connected(
        &console, 1
    )));
    assert_in_sync(&m.cp, &b1, &logs);
    assert_in_sync(&m.cp, &unix(&m.dir, 2), &logs);
    assert!(connects() > before, "{}", cmgrd.log());
    eprintln!(
        "cut detected after {detected:?}, resynced {:?} after the heal",
        healed.elapsed()
    );
}
