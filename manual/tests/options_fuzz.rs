//! Property test of every program's command line, from a fixed seed: each
//! option that takes a value (of every program in the manual, and of each
//! fpsync subcommand) is given random and mutated values. Nothing panics
//! (clap's own definition checks included); a value refused is refused
//! with an error naming the option. cmgrd's options also go through
//! `Options::from_matches`, the way cmgrd reads them.

use std::panic::{catch_unwind, AssertUnwindSafe};

use clap::error::ErrorKind;
use clap::{Arg, Command};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "-1",
    "1.5",
    "5s",
    "100ms",
    "2min",
    "64M",
    "2G",
    "3G",
    "1K",
    "0x1ffff",
    "0x40000",
    "99999999999999999999",
    "18446744073709551615",
    "18446744073709551616G",
    "4294967295",
    "4294967296",
    "1e300",
    "inf",
    "NaN",
    "unix:/tmp/x.sock",
    "tcp:127.0.0.1:7000",
    "tcp:[::1]:99999",
    "1=tcp:host:1",
    "2=",
    "=",
    "v2",
    "v3",
    "af_xdp",
    "system",
    "private",
    "red",
    "a,b",
    "0,1,2",
    "é",
    "--",
    "-",
];

/// The options that take a duration or a size (common::units).
const BOUNDED: &[(&str, &str)] = &[
    ("cmgrd", "-b"),
    ("cmgrd", "-l"),
    ("cmgrd", "--max-queue"),
    ("cmgrd", "--link-poll"),
    ("fpsync-check", "--wait"),
    ("fpsync", "--timeout"),
];

const ALPHABET: &[char] = &[
    '0', '9', '.', ',', ':', '=', '[', ']', '-', 'x', 'K', 'M', 'G', 's', ' ', 'é', '\u{0}', '/',
];

fn mutate(s: &str, rng: &mut SmallRng) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    for _ in 0..rng.random_range(1..=3) {
        let len = chars.len();
        match rng.random_range(0..3) {
            0 => chars.insert(
                rng.random_range(0..=len),
                ALPHABET[rng.random_range(0..ALPHABET.len())],
            ),
            1 if len > 0 => {
                chars.remove(rng.random_range(0..len));
            }
            _ => chars.truncate(rng.random_range(0..=len)),
        }
    }
    chars.into_iter().collect()
}

/// The words that make a command line valid apart from the option under
/// test (required options and positionals).
fn required(cmd: &Command) -> Vec<String> {
    let mut words = Vec::new();
    for arg in cmd.get_arguments().filter(|a| a.is_required_set()) {
        let listed = arg
            .get_possible_values()
            .first()
            .map(|v| v.get_name().to_owned());
        let value = listed.unwrap_or_else(|| {
            match arg.get_id().as_str() {
                "daemon" => "cmgrd1",
                "command" => "help",
                _ => "1",
            }
            .to_owned()
        });
        let value = value.as_str();
        match arg.get_long() {
            Some(long) => words.extend([format!("--{long}"), value.to_owned()]),
            None => match arg.get_short() {
                Some(s) => words.extend([format!("-{s}"), value.to_owned()]),
                None => words.push(value.to_owned()),
            },
        }
    }
    words
}

fn flag(arg: &Arg) -> Option<String> {
    arg.get_long()
        .map(|l| format!("--{l}"))
        .or_else(|| arg.get_short().map(|s| format!("-{s}")))
}

fn takes_value(arg: &Arg) -> bool {
    !arg.is_positional()
        && arg
            .get_num_args()
            .is_some_and(|n| n.takes_values() && n.min_values() > 0)
}

/// Parses `argv` as `program` does; the error, if any.
fn parse(program: &str, cmd: &Command, argv: &[String]) -> Option<clap::Error> {
    if program == "cmgrd" {
        return instance::Options::try_parse_from(argv).err();
    }
    cmd.clone().try_get_matches_from(argv).err()
}

fn fuzz_command(
    program: &str,
    top: &Command,
    cmd: &Command,
    prefix: &[String],
    rng: &mut SmallRng,
    stats: &mut (usize, usize),
) {
    let base: Vec<String> = prefix.iter().cloned().chain(required(cmd)).collect();
    // The required words alone parse (or the test proves little).
    if let Some(e) = parse(program, top, &base) {
        assert!(
            matches!(
                e.kind(),
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                    | ErrorKind::MissingSubcommand
                    // required_unless_present (fpsync logs -I|-b): values
                    // are still parsed, and refused, before this check.
                    | ErrorKind::MissingRequiredArgument
            ),
            "{base:?}: {e}"
        );
    }
    for arg in cmd.get_arguments().filter(|a| takes_value(a)) {
        let Some(flag) = flag(arg) else { continue };
        for round in 0..150 {
            let mut value = VALUES[rng.random_range(0..VALUES.len())].to_owned();
            if round % 2 == 1 {
                value = mutate(&value, rng);
            }
            if round == 7 {
                value = "9".repeat(10_000);
            }
            let mut argv = base.clone();
            // Both spellings: `--opt value` and `--opt=value`.
            if rng.random_bool(0.5) && flag.starts_with("--") {
                argv.push(format!("{flag}={value}"));
            } else {
                argv.extend([flag.clone(), value.clone()]);
            }
            let result = catch_unwind(AssertUnwindSafe(|| parse(program, top, &argv)));
            let err = match result {
                Ok(e) => e,
                Err(_) => panic!("{program}: {argv:?} panicked"),
            };
            match err {
                None => stats.0 += 1,
                Some(e) => {
                    stats.1 += 1;
                    let text = e.to_string();
                    if matches!(
                        e.kind(),
                        ErrorKind::ValueValidation | ErrorKind::InvalidValue
                    ) {
                        assert!(text.contains(&flag), "{program} {argv:?}: {text}");
                    }
                    // The durations and sizes quote a short prefix only.
                    if BOUNDED.contains(&(program, flag.as_str())) {
                        assert!(
                            text.lines().all(|l| l.len() < 400),
                            "{program} {flag}: {}",
                            &text[..text.len().min(500)]
                        );
                    }
                    assert_ne!(e.exit_code(), 0, "{argv:?}");
                }
            }
        }
    }
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let mut p = prefix.to_vec();
        p.push(sub.get_name().to_owned());
        fuzz_command(program, top, sub, &p, rng, stats);
    }
}

#[test]
fn every_option_of_every_program_survives_random_values() {
    let mut rng = SmallRng::seed_from_u64(0x0b71_0115);
    for p in manual::PROGRAMS {
        let mut cmd = (p.command)();
        cmd.clone().debug_assert();
        // Built: each argument knows how many values it takes.
        cmd.build();
        let mut stats = (0, 0);
        fuzz_command(
            p.name,
            &cmd,
            &cmd,
            &[p.name.to_owned()],
            &mut rng,
            &mut stats,
        );
        let (accepted, refused) = stats;
        if p.name != "daemonctl" {
            // daemonctl has words only; every other program has options.
            assert!(accepted > 0 && refused > 0, "{}: {stats:?}", p.name);
        }
    }
}
