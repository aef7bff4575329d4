//! Property test of the configuration files, from a fixed seed: texts made
//! from the env-file grammar (`VAR=value`, `export`, `: ${VAR:=value}`,
//! quotes, `$VAR` and `${VAR}`, comments), then mutated at random, go
//! through `Vars::apply`; random and mutated values of every variable
//! fpsyncd reads go through `Config::load_from`. Nothing may panic; a text
//! refused is refused with its file and a line that exists, a value refused
//! with an error naming the variable, and no message echoes more than a
//! short prefix of its input.

use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::{Config, ConfigError};
use crate::envfile::Vars;

/// Every variable `Config::load_from` reads (a test below keeps the list
/// true to config.rs).
const VARIABLES: &[&str] = &[
    "INSTANCES",
    "BLADES",
    "FPD_OPTIONS",
    "FPSYNC_RUN_DIR",
    "CMGR_INSTANCE_CONF",
    "RESTART_SEC",
    "RESTART_MAX_DELAY_SEC",
    "START_LIMIT_BURST",
    "START_LIMIT_INTERVAL_SEC",
    "TIMEOUT_START_SEC",
    "TIMEOUT_STOP_SEC",
    "QUERY_TIMEOUT_SEC",
    "FPC_TLS_CERT",
    "FPC_TLS_KEY",
    "FPC_TLS_CA",
    "BLADE_1_ENDPOINT",
    "FPC_KEEPALIVE_SEC",
    "FPC_PEER_TIMEOUT_SEC",
    "BLADE_1_LISTEN",
    "REPORT_INTERVAL_SEC",
    "METRICS_LISTEN",
    "CMGR_NETNS",
    "CMGR_BLADES",
    "CMGR_OPTIONS",
    "DEBUG",
    "BPF_OPT",
    "HA_IPSEC",
    "HA",
];

/// Values worth trying in any variable.
const VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "2",
    "1 2",
    "1,2",
    "3 3",
    "5s",
    "100ms",
    "1.5",
    "2min",
    "8760h",
    "8761h",
    "99999999999999999999s",
    "18446744073709551615",
    "18446744073709551616",
    "4294967295",
    "4294967296",
    "-1",
    "1e9",
    "inf",
    "NaN",
    "true",
    "false",
    "yes",
    "maybe",
    "red",
    "../x",
    "/",
    "a/b",
    "tcp:192.0.2.1:7700",
    "unix:/run/x.sock",
    "-I 3",
    "-I3",
    "--blade 2",
    "--blade=2",
    "--listen x",
    "-F",
    "-l 32M",
    "'a b'",
    "\"unterminated",
    "'open",
    "é",
    "0x1",
    "%i",
];

const ALPHABET: &[char] = &[
    '$', '{', '}', '"', '\'', '\\', '=', ':', '#', ';', '&', '|', '(', ')', '<', '>', '`', ' ',
    '\t', '\n', '\r', 'A', 'z', '_', '0', '9', '.', '-', '%', 'é', '\u{0}', '\u{feff}',
];

fn pick<'a>(rng: &mut SmallRng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

fn mutate(s: &str, rng: &mut SmallRng) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    for _ in 0..rng.random_range(1..=4) {
        let len = chars.len();
        match rng.random_range(0..5) {
            0 => chars.insert(
                rng.random_range(0..=len),
                ALPHABET[rng.random_range(0..ALPHABET.len())],
            ),
            1 if len > 0 => {
                chars.remove(rng.random_range(0..len));
            }
            2 => chars.truncate(rng.random_range(0..=len)),
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                chars[i] = ALPHABET[rng.random_range(0..ALPHABET.len())];
            }
            _ if len > 0 => {
                let i = rng.random_range(0..len);
                let run: Vec<char> = chars[i..].iter().copied().take(16).collect();
                let at = rng.random_range(0..=len);
                chars.splice(at..at, run);
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// A value as the grammar writes it: bare, quoted, with expansions.
fn written_value(rng: &mut SmallRng) -> String {
    let v = pick(rng, VALUES);
    let name = pick(rng, VARIABLES);
    match rng.random_range(0..6) {
        0 => v.replace(' ', ""),
        1 => format!("\"{v}\""),
        2 => format!("'{v}'"),
        3 => format!("\"$${name} {v}\"").replace("$$", "$"),
        4 => format!("${{{name}}}x"),
        _ => format!("\"{v} \\\" ${{{name}}}\""),
    }
}

fn grammar_line(rng: &mut SmallRng) -> String {
    let name = pick(rng, VARIABLES);
    let value = written_value(rng);
    match rng.random_range(0..7) {
        0 => format!("{name}={value}"),
        1 => format!("export {name}={value}"),
        2 => format!(": ${{{name}:={value}}}"),
        3 => format!(": ${{{name}={value}}}"),
        4 => format!("{name}={value} # a comment"),
        5 => "# a comment".to_owned(),
        _ => String::new(),
    }
}

#[test]
fn env_files_survive_random_and_mutated_text() {
    let mut rng = SmallRng::seed_from_u64(0x0e7f_11e5);
    let path = Path::new("/etc/fuzz.env");
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..40_000 {
        let lines: Vec<String> = (0..rng.random_range(1..=6))
            .map(|_| grammar_line(&mut rng))
            .collect();
        let mut text = lines.join("\n");
        if i % 2 == 1 {
            text = mutate(&text, &mut rng);
        }
        let mut vars = Vars::from_env([("HA".to_owned(), "true".to_owned())]);
        match vars.apply(path, &text) {
            Ok(()) => accepted += 1,
            Err(e) => {
                refused += 1;
                assert_eq!(e.path, path);
                assert!(
                    (1..=text.lines().count()).contains(&e.line),
                    "line {} of {text:?}",
                    e.line
                );
                assert!(e.message.len() < 300, "{text:?}: {e}");
            }
        }
    }
    // Long lines: refused (or taken) without echoing them whole.
    let long = format!("A={}\n", "x ".repeat(50_000));
    let e = Vars::default().apply(path, &long).unwrap_err();
    assert!(e.message.len() < 300, "{e}");
    assert!(
        accepted > 5_000 && refused > 5_000,
        "{accepted} accepted, {refused} refused"
    );
}

struct Files(PathBuf);
impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn error_text(e: &ConfigError) -> String {
    common::error_chain(e)
}

#[test]
fn every_variable_survives_random_values() {
    let dir = std::env::temp_dir().join(format!("fpsync-config-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = Files(dir);
    let global = files.0.join("lfs.env");
    let cmgr = files.0.join("cmgr.env");
    std::fs::write(&global, "").unwrap();
    std::fs::write(&cmgr, "").unwrap();
    let base = vec![
        (
            "CONF_FILE_linux_fp_sync".to_owned(),
            global.display().to_string(),
        ),
        ("CONF_FILE_cmgr".to_owned(), cmgr.display().to_string()),
        (
            "CMGR_INSTANCE_CONF".to_owned(),
            files.0.join("none@%i.env").display().to_string(),
        ),
    ];
    let mut rng = SmallRng::seed_from_u64(0xc0f1_6000);
    let (mut loaded, mut refused) = (0, 0);
    for _ in 0..6_000 {
        let mut env = base.clone();
        let mut fuzzed = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            let name = pick(&mut rng, VARIABLES);
            let mut value = pick(&mut rng, VALUES).to_owned();
            if rng.random_bool(0.5) {
                value = mutate(&value, &mut rng);
            }
            if rng.random_bool(0.02) {
                value = value.repeat(2_000);
            }
            env.retain(|(k, _)| k != name);
            env.push((name.to_owned(), value));
            fuzzed.push(name);
        }
        match Config::load_from(env.clone()) {
            Ok(c) => {
                loaded += 1;
                for d in [c.start_timeout, c.stop_timeout, c.query_timeout] {
                    assert!(d <= crate::config::MAX_DURATION);
                }
            }
            Err(e) => {
                refused += 1;
                let text = error_text(&e);
                // Every refusal names a variable it was given (a file that
                // cannot be read: the variable that named it).
                assert!(
                    fuzzed.iter().any(|n| text.contains(&format!("{n}:"))),
                    "{fuzzed:?}: {text}"
                );
                if let ConfigError::Read { via, .. } = &e {
                    assert!(via.contains("CMGR_INSTANCE_CONF"), "{text}");
                }
                for line in text.lines() {
                    assert!(line.len() < 400, "{fuzzed:?}: {line}");
                }
            }
        }
    }
    assert!(
        loaded > 500 && refused > 500,
        "{loaded} loaded, {refused} refused"
    );
}

/// VARIABLES names what config.rs reads: every upper-case string literal
/// there that is a variable name is in the list, and each listed name is
/// in config.rs.
#[test]
fn the_variable_list_is_complete() {
    let source = include_str!("config.rs");
    let code = &source[..source.find("#[cfg(test)]").unwrap_or(source.len())];
    let mut found = std::collections::BTreeSet::new();
    for piece in code.split('"').skip(1).step_by(2) {
        let is_name = piece.len() > 1
            && piece.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            && piece.starts_with(|c: char| c.is_ascii_uppercase());
        if is_name {
            found.insert(piece);
        }
    }
    for name in &found {
        assert!(VARIABLES.contains(name), "{name} is read but not fuzzed");
    }
    for name in VARIABLES {
        // A blade's variable is read through its template (`{id}`).
        let template = format!("\"{}\"", name.replace('1', "{id}"));
        assert!(
            code.contains(&format!("\"{name}\"")) || code.contains(&template),
            "{name} is not read"
        );
    }
}
