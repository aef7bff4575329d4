//! daemonctl parses its words by hand (as the seed's does); the clap
//! command in `instance::cli` only describes it for the man page and the
//! completions. This keeps the two in step.

use std::process::Command;

#[test]
fn the_described_command_matches_the_program() {
    let mut cmd = instance::cli::daemonctl_command();
    cmd.build();
    let usage = cmd.render_usage().to_string();
    assert!(
        usage.contains("daemonctl <cmgrd[<id>]> [COMMAND]..."),
        "{usage}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_daemonctl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("usage: daemonctl cmgrd[<id>] [command...]"),
        "{err}"
    );
    // What the page says of exit codes: 2 for a bad daemon name, 1 for an
    // unreachable console.
    let out = Command::new(env!("CARGO_BIN_EXE_daemonctl"))
        .arg("fpd1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let long = cmd.get_long_about().unwrap().to_string();
    assert!(long.contains("2 for a bad command line"), "{long}");
    let out = Command::new(env!("CARGO_BIN_EXE_daemonctl"))
        .args(["cmgrd4000000000", "help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}
