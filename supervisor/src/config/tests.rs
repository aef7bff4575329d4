//! Tests of the configuration: the env files as the seed writes them, every
//! error naming its variable, file and line.

use super::*;

struct Files(PathBuf);
impl Files {
    fn new(tag: &str) -> Files {
        let p = std::env::temp_dir().join(format!("fpsync-config-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Files(p)
    }
    fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
    fn env(&self, global: &str) -> Vec<(String, String)> {
        vec![
            (
                "CONF_FILE_linux_fp_sync".into(),
                self.write("lfs.env", global),
            ),
            (
                "CONF_FILE_cmgr".into(),
                self.write("cmgr.env", ": ${CMGR_OPTIONS:=}\n"),
            ),
        ]
    }
}
impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn ha_implies_ipsec_ha_unless_ha_ipsec_is_set() {
    let f = Files::new("ha");
    let pattern = f.0.join("cmgr@%i.env").display().to_string();
    let has_r = |body: &str| {
        f.write("cmgr@1.env", body);
        let env = f.env(&format!("CMGR_INSTANCE_CONF={pattern}\n"));
        let c = Config::load_from(env).unwrap();
        c.cmgrd_args(&c.instances[0]).contains(&"-R".to_owned())
    };
    assert!(has_r("HA=true\n"));
    assert!(!has_r("HA=true\nHA_IPSEC=false\n"));
    assert!(has_r("HA=false\nHA_IPSEC=true\n"));
    assert!(!has_r(""));
}

#[test]
fn two_instances_two_blades() {
    let f = Files::new("two");
    let pattern = f.0.join("cmgr@%i.env").display().to_string();
    f.write("cmgr@1.env", "CMGR_NETNS=red\n");
    f.write(
        "cmgr@2.env",
        "CMGR_NETNS=blue\nHA_IPSEC=true\nCMGR_OPTIONS=\"-l 32M\"\n",
    );
    let env = f.env(&format!(
        "INSTANCES=\"1 2\"\nCMGR_INSTANCE_CONF={pattern}\nFPSYNC_RUN_DIR=/tmp/x\nRESTART_SEC=50ms\n"
    ));
    let c = Config::load_from(env).unwrap();
    assert_eq!(c.instances.len(), 2);
    assert_eq!(c.instances[1].netns.as_deref(), Some("blue"));
    assert_eq!(
        c.blades.iter().map(|b| b.id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(c.blades[1].instance, Some(2));
    assert_eq!(c.policy.restart_sec, Duration::from_millis(50));
    assert_eq!(
        c.cmgrd_args(&c.instances[1]),
        vec![
            "-F",
            "-I",
            "2",
            "--netns",
            "blue",
            "--blade",
            "2=unix:/tmp/x/fpd2.sock",
            "-R",
            "-l",
            "32M"
        ]
    );
    assert_eq!(
        c.fpd_args(&c.blades[0]),
        vec!["--blade", "1", "--listen", "unix:/tmp/x/fpd1.sock"]
    );
}

#[test]
fn tls_files_and_a_tcp_listener_go_to_the_daemons() {
    let f = Files::new("tls");
    let env = f.env(
        "BLADE_1_LISTEN=tcp:10.0.0.2:7700\nFPC_TLS_CERT=/etc/fpsync/c.pem\nFPC_TLS_KEY=/etc/fpsync/c.key\nFPC_TLS_CA=/etc/fpsync/ca.pem\nFPSYNC_RUN_DIR=/tmp/x\n",
    );
    let c = Config::load_from(env).unwrap();
    let tls = [
        "--tls-cert",
        "/etc/fpsync/c.pem",
        "--tls-key",
        "/etc/fpsync/c.key",
        "--tls-ca",
        "/etc/fpsync/ca.pem",
    ];
    let mut want = vec![
        "--blade",
        "1",
        "--listen",
        "unix:/tmp/x/fpd1.sock",
        "--listen",
        "tcp:10.0.0.2:7700",
    ];
    want.extend(tls);
    assert_eq!(c.fpd_args(&c.blades[0]), want);
    assert!(c
        .cmgrd_args(&c.instances[0])
        .ends_with(&tls.map(String::from)));
    // A listener without the files, or one file alone: named errors.
    let e = Config::load_from(f.env("BLADE_1_LISTEN=tcp:10.0.0.2:7700\n")).unwrap_err();
    assert!(
        e.to_string()
            .contains("BLADE_1_LISTEN: FPC over TCP needs FPC_TLS_CERT"),
        "{e}"
    );
    let e = Config::load_from(f.env("FPC_TLS_CERT=/c.pem\n")).unwrap_err();
    assert!(
        e.to_string()
            .contains("FPC_TLS_CERT: FPC_TLS_KEY is missing"),
        "{e}"
    );
    let e = Config::load_from(f.env("BLADE_1_LISTEN=unix:/x\n")).unwrap_err();
    assert!(
        e.to_string()
            .contains("BLADE_1_LISTEN: \"unix:/x\" is not tcp:HOST:PORT"),
        "{e}"
    );
}

#[test]
fn a_remote_blade_is_dialled_not_started() {
    let f = Files::new("remote");
    let tls = "FPC_TLS_CERT=/etc/fpsync/c.pem\nFPC_TLS_KEY=/etc/fpsync/c.key\nFPC_TLS_CA=/etc/fpsync/ca.pem\n";
    let c = Config::load_from(f.env(&format!(
        "BLADE_1_ENDPOINT=tcp:192.0.2.7:7700\nFPSYNC_RUN_DIR=/tmp/x\n{tls}"
    )))
    .unwrap();
    assert!(c.blades[0].remote);
    assert_eq!(c.blades[0].endpoint.to_string(), "tcp:192.0.2.7:7700");
    let args = c.cmgrd_args(&c.instances[0]);
    assert_eq!(
        args[..5],
        ["-F", "-I", "1", "--blade", "1=tcp:192.0.2.7:7700"].map(String::from)
    );
    assert!(args.contains(&"--tls-ca".to_owned()), "{args:?}");
    // Without the TLS files, with a listener too, or not TCP: named
    // errors.
    let e = Config::load_from(f.env("BLADE_1_ENDPOINT=tcp:192.0.2.7:7700\n")).unwrap_err();
    assert!(
        e.to_string().ends_with(
            "lfs.env:1: BLADE_1_ENDPOINT: a remote blade is reached over mutual TLS: set FPC_TLS_CERT, FPC_TLS_KEY and FPC_TLS_CA"
        ),
        "{e}"
    );
    let e = Config::load_from(f.env(&format!(
        "BLADE_1_ENDPOINT=tcp:192.0.2.7:7700\nBLADE_1_LISTEN=tcp:10.0.0.1:7700\n{tls}"
    )))
    .unwrap_err();
    assert!(
        e.to_string().contains(
            "BLADE_1_ENDPOINT: blade 1 is remote (its fpd runs on another host), so BLADE_1_LISTEN"
        ),
        "{e}"
    );
    for bad_value in [
        "unix:/run/x.sock",
        "tcp:blade7:7700",
        "tcp:192.0.2.7",
        "192.0.2.7:7700",
    ] {
        let e =
            Config::load_from(f.env(&format!("BLADE_1_ENDPOINT={bad_value}\n{tls}"))).unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "BLADE_1_ENDPOINT: \"{bad_value}\" is not tcp:HOST:PORT (HOST an IP address)"
            )),
            "{e}"
        );
    }
    // A blade nobody runs: the variable is a mistake, said so.
    let e = Config::load_from(f.env(&format!("BLADE_2_ENDPOINT=tcp:192.0.2.7:7700\n{tls}")))
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "lfs.env:1: BLADE_2_ENDPOINT: names a blade no instance feeds and BLADES does not list"
        ),
        "{e}"
    );
}

#[test]
fn liveness_goes_to_both_daemons() {
    let f = Files::new("live");
    let c = Config::load_from(
        f.env("FPC_KEEPALIVE_SEC=500ms\nFPC_PEER_TIMEOUT_SEC=3\nFPSYNC_RUN_DIR=/tmp/x\n"),
    )
    .unwrap();
    let want = ["--keepalive", "0.5", "--peer-timeout", "3"].map(String::from);
    assert!(c.fpd_args(&c.blades[0]).ends_with(&want));
    assert!(c.cmgrd_args(&c.instances[0]).ends_with(&want));
    // Unset: nothing passed, the daemons' defaults.
    let c = Config::load_from(f.env("FPSYNC_RUN_DIR=/tmp/x\n")).unwrap();
    assert!(!c.fpd_args(&c.blades[0]).contains(&"--keepalive".to_owned()));
    for (text, want) in [
        (
            "FPC_KEEPALIVE_SEC=0\n",
            "FPC_KEEPALIVE_SEC: 0ns is not more than 0",
        ),
        (
            "FPC_PEER_TIMEOUT_SEC=25h\n",
            "FPC_PEER_TIMEOUT_SEC: 90000s is not more than 0 and at most 86400s",
        ),
        ("FPC_KEEPALIVE_SEC=soon\n", "lfs.env:1: FPC_KEEPALIVE_SEC: "),
        (
            "FPC_PEER_TIMEOUT_SEC=1\n",
            "FPC_PEER_TIMEOUT_SEC: the peer timeout (1s) must be longer than the keepalive (1s)",
        ),
        (
            "FPC_KEEPALIVE_SEC=6\n",
            "FPC_KEEPALIVE_SEC: the peer timeout (5s) must be longer than the keepalive (6s)",
        ),
        (
            "FPC_KEEPALIVE_SEC=2\nFPD_OPTIONS=\"--keepalive 3\"\n",
            "FPD_OPTIONS: --keepalive is set by fpsyncd (from FPC_KEEPALIVE_SEC)",
        ),
    ] {
        let e = Config::load_from(f.env(text)).unwrap_err();
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
}

#[test]
fn shipped_default_is_one_instance_one_blade_here() {
    let f = Files::new("default");
    let c = Config::load_from(f.env("# nothing\n")).unwrap();
    assert_eq!(c.instances.len(), 1);
    assert_eq!(c.instances[0].id, 1);
    assert_eq!(c.instances[0].netns, None);
    assert_eq!(c.blades.len(), 1);
    assert_eq!(c.blades[0].id, 1);
}

#[test]
fn wrong_values_name_file_and_line() {
    let f = Files::new("bad");
    let e = Config::load_from(f.env("A=1\nINSTANCES=\"1 x\"\n")).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("lfs.env:2: INSTANCES: \"x\" is not an instance id"),
        "{e}"
    );
    let e = Config::load_from(f.env("INSTANCES=\"1 1\"\n")).unwrap_err();
    assert!(e.to_string().contains("listed twice"), "{e}");
    let e = Config::load_from(f.env("RESTART_SEC=soon\n")).unwrap_err();
    assert!(e.to_string().contains("lfs.env:1: RESTART_SEC"), "{e}");
    let e = Config::load_from(f.env("INSTANCES=1\nBLADES=2\n")).unwrap_err();
    assert!(
        e.to_string().contains("feeds blade 1, which is not listed"),
        "{e}"
    );
    let pattern = f.0.join("cmgr@%i.env").display().to_string();
    f.write("cmgr@3.env", "\nCMGR_BLADES=4\n");
    f.write("cmgr@4.env", "CMGR_OPTIONS=\"-I 9\"\n");
    let e = Config::load_from(f.env(&format!(
        "INSTANCES=\"3 4\"\nCMGR_INSTANCE_CONF={pattern}\n"
    )))
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("cmgr@4.env:1: CMGR_BLADES: blade 4 is already fed by instance 3")
            || e.to_string().contains("cmgr@4.env:1: CMGR_OPTIONS"),
        "{e}"
    );
    let e = Config::load_from(vec![(
        "CONF_FILE_linux_fp_sync".into(),
        "/nonexistent/lfs.env".into(),
    )])
    .unwrap_err();
    assert!(
        e.to_string().contains("cannot read /nonexistent/lfs.env"),
        "{e}"
    );
}

#[test]
fn a_named_file_is_read_with_a_bound_and_named_by_its_variable() {
    let e = Config::load_from(vec![("CONF_FILE_linux_fp_sync".into(), "/dev/zero".into())])
        .unwrap_err();
    let text = common::error_chain(&e);
    assert_eq!(
        text,
        "the environment: CONF_FILE_linux_fp_sync: cannot read /dev/zero: larger than 1048576 bytes"
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
    assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
    assert_eq!(parse_duration("1min").unwrap(), Duration::from_secs(60));
    assert!(parse_duration("fast").is_err());
    assert!(parse_duration("3 parsecs").is_err());
}
