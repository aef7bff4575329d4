//! Helpers for the tests that run the real `fpd` binary: a process guard
//! that kills fpd and removes its directory even when a test fails, and a
//! blocking frame-level client that can also send raw bytes.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fpc::{all_capabilities, parse_header, Header, Hello, Message, Role, HEADER_LEN, VERSION};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fpsync-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running fpd, killed when dropped.
pub struct Fpd {
    child: Option<Child>,
    pub socket: PathBuf,
    log: PathBuf,
    // Last, so that the directory goes after the process.
    pub dir: TempDir,
}

impl Fpd {
    /// Starts fpd (blade 7) on `DIR/sub/fpd.sock` and waits until it answers.
    pub fn start(tag: &str) -> Fpd {
        Self::start_with(tag, &[])
    }

    /// As `start`, with more options.
    pub fn start_with(tag: &str, options: &[&str]) -> Fpd {
        let dir = TempDir::new(tag);
        // A directory fpd has to create.
        let socket = dir.0.join("sub").join("fpd.sock");
        let log = dir.0.join("fpd.log");
        let listen = format!("unix:{}", socket.display());
        let mut args = vec!["--blade", "7", "--listen", &listen];
        args.extend_from_slice(options);
        let child = fpd_command(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start fpd");
        let fpd = Fpd {
            child: Some(child),
            socket,
            log,
            dir,
        };
        fpd.wait_ready();
        fpd
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut c) = Client::connect(&self.socket) {
                // A real session, so that fpd does not wait for a Hello.
                c.hello(Role::Query, VERSION);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("fpd did not start; its log:\n{}", self.log());
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// What fpd wrote on stderr (its logs when there is no journal).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("fpd did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Fpd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("fpd log:\n{}", self.log());
        }
    }
}

pub fn fpd_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fpd"));
    cmd.args(args)
        .env("FPSYNC_LOG", "debug")
        .stdin(Stdio::null());
    cmd
}

/// Whether fpd logs to stderr here (no journal to take them).
pub fn logs_to_stderr() -> bool {
    !Path::new("/run/systemd/journal/socket").exists()
}

/// A blocking FPC client speaking frames, or raw bytes.
pub struct Client {
    pub stream: UnixStream,
    seq: u64,
    /// The Arbitration frames fpd sent a sync session (set aside by
    /// `recv`, like any unsolicited report).
    pub arbitrations: Vec<Message>,
}

impl Client {
    pub fn connect(path: &Path) -> io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_write_timeout(Some(Duration::from_secs(20)))?;
        Ok(Client {
            stream,
            seq: 0,
            arbitrations: Vec::new(),
        })
    }

    /// Sends a frame; returns its sequence number.
    pub fn send(&mut self, msg: &Message) -> u64 {
        self.seq += 1;
        let mut frame = Vec::new();
        msg.emit(self.seq, &mut frame);
        self.stream.write_all(&frame).expect("send a frame");
        self.seq
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next frame but Arbitration (kept in `arbitrations`) and
    /// Keepalive, or `None`
    /// at the end of the stream.
    pub fn recv(&mut self) -> io::Result<Option<(Header, Message)>> {
        loop {
            match self.recv_any()? {
                Some((_, m @ Message::Arbitration { .. })) => self.arbitrations.push(m),
                Some((_, Message::Keepalive)) => {}
                other => return Ok(other),
            }
        }
    }

    /// The next frame, or `None` at the end of the stream.
    pub fn recv_any(&mut self) -> io::Result<Option<(Header, Message)>> {
        let mut raw = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match self.stream.read(&mut raw[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset && got == 0 => {
                    return Ok(None)
                }
                // A signal (a child of the test exiting) may interrupt a
                // long wait: that is no answer from fpd, read again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let header = parse_header(&raw).map_err(io::Error::other)?;
        let mut body = vec![0; header.body_len];
        self.stream.read_exact(&mut body)?;
        let msg = Message::parse(&header, &body).map_err(io::Error::other)?;
        Ok(Some((header, msg)))
    }

    pub fn expect(&mut self) -> (Header, Message) {
        self.recv()
            .expect("read a frame")
            .expect("a frame, not the end of the stream")
    }

    /// Says Hello as instance 3 to blade 7 (`Fpd::start`'s).
    pub fn hello(&mut self, role: Role, version: u16) -> Hello {
        self.hello_to(role, version, 7)
    }

    pub fn hello_to(&mut self, role: Role, version: u16, blade: u32) -> Hello {
        self.send(&Message::Hello(Hello {
            version,
            role,
            instance: 3,
            blade,
            capabilities: all_capabilities(),
            election_id: 0,
            name: "fpsync-test".into(),
        }));
        match self.expect() {
            (_, Message::Hello(h)) => h,
            (_, other) => panic!("expected Hello, got {other:?}"),
        }
    }

    /// Sends `msg` and returns the Ack's errors, checking its sequence.
    pub fn apply(&mut self, msg: &Message) -> Vec<(u32, fpc::ObjectError)> {
        let seq = self.send(msg);
        match self.expect() {
            (h, Message::Ack(errors)) => {
                assert_eq!(h.seq, seq, "the Ack carries the frame's sequence number");
                errors
            }
            (_, other) => panic!("expected Ack, got {other:?}"),
        }
    }

    /// Reads what is left: at most one Error frame, then the end of the
    /// stream. Returns the Error's (code, message) if one came.
    pub fn expect_closed(&mut self) -> Option<(u16, String)> {
        let mut error = None;
        loop {
            match self.recv() {
                Ok(None) => return error,
                Ok(Some((_, Message::Error { code, message }))) if error.is_none() => {
                    error = Some((code, message))
                }
                Ok(Some((_, other))) => panic!("expected the end of the stream, got {other:?}"),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return error,
                Err(e) => panic!("expected the end of the stream, got {e}"),
            }
        }
    }
}
