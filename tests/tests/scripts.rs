//! cmgr.sh and linux-fp-sync.sh as an operator runs them: real shells,
//! real configuration files, the seed's precedence rules.
//!
//! The seed: a variable already in the environment wins over
//! `: ${VAR:=value}` in the file; `VAR=value` in the file wins over the
//! environment. CONF_FILE_cmgr / CONF_FILE_linux_fp_sync replace the
//! default files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use fpsync_tests::{bin, console, unique, wait_until, Netns, TempDir};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// One cmgr.sh service: its namespace, configuration file and instance.
struct Service {
    /// Kept for its lifetime: the namespace goes with the service.
    _ns: Netns,
    dir: TempDir,
    id: u32,
    conf: PathBuf,
}

impl Service {
    fn new(tag: &str, conf_body: &str) -> Service {
        let ns = Netns::new(tag);
        let dir = TempDir::new(tag);
        let id = unique();
        let conf = dir.path.join("cmgr.env");
        let body = conf_body
            .replace("@ID@", &id.to_string())
            .replace("@NS@", &ns.name)
            .replace("@DIR@", dir.path.to_str().unwrap());
        std::fs::write(&conf, body).unwrap();
        Service {
            _ns: ns,
            dir,
            id,
            conf,
        }
    }

    /// cmgr.sh VERB with `env` added to a clean environment.
    fn cmgr_sh(&self, verb: &str, env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(repo().join("scripts/cmgr.sh"));
        c.arg(verb)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("FPSYNC_NO_JOURNAL", "1")
            .env("CONF_FILE_cmgr", &self.conf)
            .env("CMGRD", bin("cmgrd"))
            .env("DAEMONCTL", bin("daemonctl"));
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn console(&self, cmd: &str) -> String {
        console(Path::new(&format!("/tmp/.cmgrd{}", self.id)), cmd)
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path.join("cmgrd.pid")
    }

    /// Starts with `env`, runs `check` against the console, stops.
    fn with_started(&self, env: &[(&str, &str)], check: impl FnOnce(&Service)) {
        let out = self.cmgr_sh("start", env);
        assert!(out.status.success(), "start: {}", text(&out));
        let _guard = StopOnDrop(self);
        check(self);
    }
}

struct StopOnDrop<'a>(&'a Service);
impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let out = self.0.cmgr_sh("stop", &[]);
        if !out.status.success() {
            if let Ok(pid) = std::fs::read_to_string(self.0.pid_file()) {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    // SAFETY: kill(2) of the daemon this test started.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = std::fs::remove_file(format!("/run/fpsync/cmgrd{}.log", self.0.id));
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const BASE: &str = "CMGR_OPTIONS=\"-I @ID@ --netns @NS@ --pid-file @DIR@/cmgrd.pid --blade 1=unix:@DIR@/fpd.sock\"\n";

#[test]
fn start_status_stop() {
    let s = Service::new("svc", BASE);
    let out = s.cmgr_sh("status", &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("is not running"));
    let out = s.cmgr_sh("start", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("cmgrd{} started (pid ", s.id)));
    let out = s.cmgr_sh("start", &[]);
    assert!(text(&out).contains("already running"), "{}", text(&out));
    let out = s.cmgr_sh("status", &[]);
    assert!(out.status.success());
    assert!(
        text(&out).contains("Synchronization state: synced"),
        "{}",
        text(&out)
    );
    let pid = std::fs::read_to_string(s.pid_file()).unwrap();
    let out = s.cmgr_sh("restart", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(std::fs::read_to_string(s.pid_file()).unwrap(), pid);
    let out = s.cmgr_sh("stop", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!s.pid_file().exists());
    assert_eq!(s.cmgr_sh("status", &[]).status.code(), Some(3));
    assert_eq!(s.cmgr_sh("bogus", &[]).status.code(), Some(2));
}

#[test]
fn environment_wins_over_default_assignments() {
    let s = Service::new(
        "envwins",
        &format!("{BASE}: ${{HA_IPSEC:=false}}\n: ${{DEBUG:=0x2}}\n"),
    );
    s.with_started(&[("HA_IPSEC", "true"), ("DEBUG", "0x1")], |s| {
        assert_eq!(
            s.console("ipsec ha show"),
            "IPsec High Availability enabled\n\n"
        );
        assert!(s.console("show conf").contains("debug=0x1\n"));
    });
}

#[test]
fn file_assignments_win_over_environment() {
    let s = Service::new("filewins", &format!("{BASE}HA_IPSEC=false\nBPF_OPT=true\n"));
    s.with_started(&[("HA_IPSEC", "true"), ("BPF_OPT", "false")], |s| {
        assert_eq!(
            s.console("ipsec ha show"),
            "IPsec High Availability disabled\n\n"
        );
        assert!(s.console("show conf").contains("sync_bpf_all=true\n"));
    });
}

#[test]
fn defaults_apply_when_the_environment_is_silent() {
    let s = Service::new(
        "defaults",
        &format!("{BASE}: ${{BPF_OPT:=true}}\n: ${{DEBUG:=0x1}}\n"),
    );
    s.with_started(&[], |s| {
        let conf = s.console("show conf");
        assert!(
            conf.contains("sync_bpf_all=true\n") && conf.contains("debug=0x1\n"),
            "{conf}"
        );
        assert_eq!(
            s.console("ipsec ha show"),
            "IPsec High Availability disabled\n\n"
        );
    });
}

#[test]
fn ha_implies_ipsec_ha_unless_ha_ipsec_says_otherwise() {
    let s = Service::new("ha", &format!("{BASE}: ${{HA:=false}}\n"));
    s.with_started(&[("HA", "true")], |s| {
        assert_eq!(
            s.console("ipsec ha show"),
            "IPsec High Availability enabled\n\n"
        );
    });
    s.with_started(&[("HA", "true"), ("HA_IPSEC", "false")], |s| {
        assert_eq!(
            s.console("ipsec ha show"),
            "IPsec High Availability disabled\n\n"
        );
    });
}

#[test]
fn cmgr_options_from_the_environment_replace_the_files_default() {
    // The file's default names a mask; the environment's options win.
    let ns = Netns::new("opts");
    let dir = TempDir::new("opts");
    let id = unique();
    let common = format!(
        "-I {id} --netns {} --pid-file {}/cmgrd.pid --blade 1=unix:{}/fpd.sock",
        ns.name,
        dir.path.display(),
        dir.path.display()
    );
    std::fs::write(
        dir.path.join("cmgr.env"),
        format!(": ${{CMGR_OPTIONS:=\"{common} -S 0x10000\"}}\n"),
    )
    .unwrap();
    let s = Service {
        _ns: ns,
        conf: dir.path.join("cmgr.env"),
        dir,
        id,
    };
    s.with_started(
        &[("CMGR_OPTIONS", &format!("{common} --disable-sync-bridge"))],
        |s| {
            let f = s.console("show sync-features --json");
            assert!(f.contains(r#""mask":"0x1fffd""#), "{f}");
        },
    );
    s.with_started(&[], |s| {
        let f = s.console("show sync-features --json");
        assert!(f.contains(r#""mask":"0x10000""#), "{f}");
    });
}

#[test]
fn bad_configurations_are_named() {
    let s = Service::new("badconf", &format!("{BASE}BPF_OPT=maybe\n"));
    let out = s.cmgr_sh("start", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("BPF_OPT=maybe"), "{}", text(&out));
    let s = Service::new("badmask", &format!("{BASE}DEBUG=0xZZ\n"));
    let out = s.cmgr_sh("start", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("debug mask"), "{}", text(&out));
    let out = Command::new(repo().join("scripts/cmgr.sh"))
        .arg("start")
        .env("CONF_FILE_cmgr", "/nonexistent/cmgr.env")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("/nonexistent/cmgr.env"));
}

/// linux-fp-sync.sh without the supervisor: fpd for each blade, then
/// cmgr.sh; its own file and CONF_FILE_linux_fp_sync.
#[test]
fn linux_fp_sync_starts_fast_path_and_cache_manager() {
    let ns = Netns::new("lfs");
    let dir = TempDir::new("lfs");
    let id = unique();
    let blade = 100_000 + unique();
    std::fs::write(
        dir.path.join("cmgr.env"),
        format!(
            "CMGR_OPTIONS=\"-I {id} --netns {} --pid-file {}/cmgrd.pid --blade {blade}\"\n",
            ns.name,
            dir.path.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path.join("lfs.env"),
        format!(": ${{BLADES:={blade}}}\n"),
    )
    .unwrap();
    // A PATH without the supervisor, so the script does the work itself.
    let run = |verb: &[&str]| {
        Command::new(repo().join("scripts/linux-fp-sync.sh"))
            .args(verb)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("FPSYNC_NO_JOURNAL", "1")
            .env("CONF_FILE_linux_fp_sync", dir.path.join("lfs.env"))
            .env("CONF_FILE_cmgr", dir.path.join("cmgr.env"))
            .env("FPD", bin("fpd"))
            .env("CMGRD", bin("cmgrd"))
            .env("DAEMONCTL", bin("daemonctl"))
            .env("CMGR_SH", repo().join("scripts/cmgr.sh"))
            .output()
            .unwrap()
    };
    let out = run(&["start"]);
    let started = out.status.success();
    let stop_guard = Guard(&run);
    assert!(started, "{}", text(&out));
    let ep = fpc::Endpoint::for_blade(blade);
    ns.ip(&["route", "add", "blackhole", "192.0.2.0/24"]);
    let features = instance::features::Features::default();
    let diffs =
        instance::check::check_until(Some(&ns.name), &ep, &features, Duration::from_secs(5))
            .unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
    let out = run(&["status", "complete"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains(&format!("fpd{blade} is running")) && t.contains("installation:"),
        "{t}"
    );
    assert_eq!(run(&["status", "sideways"]).status.code(), Some(2));
    drop(stop_guard);
    let out = run(&["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(wait_until(Duration::from_secs(5), || !Path::new(&format!(
        "/run/fpsync/fpd{blade}.sock"
    ))
    .exists()));
    let _ = std::fs::remove_file(format!("/run/fpsync/fpd{blade}.log"));
}

struct Guard<'a, F: Fn(&[&str]) -> Output>(&'a F);
impl<F: Fn(&[&str]) -> Output> Drop for Guard<'_, F> {
    fn drop(&mut self) {
        let _ = (self.0)(&["stop"]);
    }
}

/// A process this test started and kills (by pid) when dropped.
struct Bystander(std::process::Child);
impl Bystander {
    fn pid(&self) -> u32 {
        self.0.id()
    }
    fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}
impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_pid_file_naming_another_process_is_not_trusted() {
    let s = Service::new("pidother", BASE);
    // Another program entirely (comm "sleep").
    let mut sleeper = Bystander(Command::new("sleep").arg("1000").spawn().unwrap());
    // A process named cmgrd, but of another instance (-I on its command
    // line): a script whose comm is its file name.
    let fake = s.dir.path.join("cmgrd");
    // (No exec in it: the shell running it keeps the comm "cmgrd".)
    std::fs::write(&fake, "#!/bin/sh\nwhile :; do sleep 1; done\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let other = s.id + 1_000_000;
    let spawn = || Command::new(&fake).args(["-I", &other.to_string()]).spawn();
    // ETXTBSY while another test thread's fork still holds the file open.
    let mut tries = 0;
    let mut impostor = loop {
        match spawn() {
            Ok(c) => break Bystander(c),
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{}/cmdline", impostor.pid()))
            .is_ok_and(|c| c.contains(&format!("-I\0{other}")))
    }));
    for (who, what) in [(&mut sleeper, "sleep"), (&mut impostor, "cmgrd")] {
        std::fs::write(s.pid_file(), format!("{}\n", who.pid())).unwrap();
        let out = s.cmgr_sh("status", &[]);
        assert_eq!(out.status.code(), Some(3), "{what}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("cmgrd{} is not running", s.id))
                && text(&out).contains("ignored"),
            "{what}: {}",
            text(&out)
        );
        let out = s.cmgr_sh("stop", &[]);
        assert!(out.status.success(), "{what}: {}", text(&out));
        assert!(text(&out).contains("is not running"), "{}", text(&out));
        std::thread::sleep(Duration::from_millis(200));
        assert!(who.alive(), "cmgr.sh stop killed the {what} process");
    }
    // And start starts this instance despite the stale file.
    s.with_started(&[], |s| {
        let out = s.cmgr_sh("status", &[]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(s
            .console("show pid")
            .contains(std::fs::read_to_string(s.pid_file()).unwrap().trim()));
    });
    assert!(sleeper.alive() && impostor.alive());
}

#[test]
fn the_instance_is_the_word_after_dash_i_not_a_pid_file_path() {
    // --pid-file /x-I7.pid made the seed's script act on cmgrd7.
    let s = Service::new(
        "pidpath",
        "CMGR_OPTIONS=\"-I @ID@ --netns @NS@ --pid-file @DIR@/x-I7.pid --blade 1=unix:@DIR@/fpd.sock\"\n",
    );
    let pid_file = s.dir.path.join("x-I7.pid");
    let out = s.cmgr_sh("start", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let _guard = StopOnDrop(&s);
    assert!(
        text(&out).contains(&format!("cmgrd{} started (pid ", s.id)),
        "{}",
        text(&out)
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let out = s.cmgr_sh("status", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("cmgrd{} is running (pid {})", s.id, pid.trim())),
        "{}",
        text(&out)
    );
    // The other spellings of -I and --pid-file, and a glob that must not
    // expand (it would, from the current directory, in the seed's script).
    let s2 = Service::new(
        "pidforms",
        "CMGR_OPTIONS=\"--netns @NS@ --pid-file=@DIR@/p.pid -I@ID@ --blade 1=unix:@DIR@/fpd.sock\"\n",
    );
    let out = s2.cmgr_sh("start", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let _guard2 = StopOnDrop(&s2);
    assert!(s2.dir.path.join("p.pid").exists());
    let out = s2.cmgr_sh("status", &[]);
    assert!(
        text(&out).contains(&format!("cmgrd{} is running", s2.id)),
        "{}",
        text(&out)
    );
    let s3 = Service::new("glob", "CMGR_OPTIONS=\"-I @ID@ --netns @DIR@/*\"\n");
    std::fs::write(s3.dir.path.join("decoy"), "").unwrap();
    let out = s3.cmgr_sh("start", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("/*"),
        "the glob was expanded: {}",
        text(&out)
    );
}
