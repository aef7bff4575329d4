//! Parsers of the durations and sizes people write in configuration files
//! and on command lines, shared by every program: integer arithmetic with
//! overflow checks and stated maxima, so that no input panics (a float
//! conversion such as `Duration::from_secs_f64` panics on huge values, and
//! `Instant + Duration` past its range does too); an error quotes at most a
//! short prefix of what it was given, and its caller names the variable or
//! option.

use std::time::Duration;

/// The longest time span a setting may take: far beyond any sensible
/// timeout, and far from where `Instant + span` overflows.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// systemd's time spans: `100ms`, `5s`, `2min`, `1.5` (seconds), `0`, at
/// most [`MAX_DURATION`]. Integer arithmetic with overflow checks: no input
/// panics, and an error quotes at most a short prefix of the text.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "{} is not a time span (e.g. 100ms, 5s, 2min)",
            quoted_prefix(s)
        )
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(bad());
    }
    let scale_ns: u128 = match unit.trim() {
        "" | "s" | "sec" => 1_000_000_000,
        "ms" | "msec" => 1_000_000,
        "us" | "usec" => 1_000,
        "m" | "min" => 60_000_000_000,
        "h" | "hr" => 3_600_000_000_000,
        u => {
            return Err(format!(
                "{}: unknown unit {} (us, ms, s, min, h)",
                quoted_prefix(s),
                quoted_prefix(u)
            ))
        }
    };
    let too_long = || {
        format!(
            "{} is too long a time span (at most {}s)",
            quoted_prefix(s),
            MAX_DURATION.as_secs()
        )
    };
    // Leading zeros cannot overflow; other long digit strings do.
    let int = int.trim_start_matches('0');
    let whole: u128 = if int.is_empty() {
        0
    } else if int.len() > 20 {
        return Err(too_long());
    } else {
        int.parse().map_err(|_| bad())?
    };
    // Digits past the nanosecond do not count.
    let mut frac_ns: u128 = 0;
    let mut unit_ns = scale_ns;
    for d in frac.bytes() {
        unit_ns /= 10;
        if unit_ns == 0 {
            break;
        }
        frac_ns += u128::from(d - b'0') * unit_ns;
    }
    let total = whole
        .checked_mul(scale_ns)
        .and_then(|n| n.checked_add(frac_ns))
        .ok_or_else(too_long)?;
    if total > MAX_DURATION.as_nanos() {
        return Err(too_long());
    }
    let nanos = u64::try_from(total).map_err(|_| too_long())?;
    Ok(Duration::from_nanos(nanos))
}

/// `"text"` quoted, cut to a short prefix when long (an error message must
/// not echo a whole line back).
pub fn quoted_prefix(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        None => format!("{s:?}"),
        Some((i, _)) => format!("{:?}... ({} bytes)", &s[..i], s.len()),
    }
}

/// A number of seconds as command lines take it (`1.5`, `120`; a
/// negative number counts as 0), at most [`MAX_DURATION`].
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let v = s.trim();
    if let Some(neg) = v.strip_prefix('-') {
        // As before: a negative wait is no wait (but still a number).
        return parse_duration(neg)
            .map(|_| Duration::ZERO)
            .map_err(|_| format!("{} is not a number of seconds", quoted_prefix(s)));
    }
    if v.ends_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!("{} is not a number of seconds", quoted_prefix(s)));
    }
    parse_duration(v)
}

/// `64M`, `2K`, `1G` or a plain number of bytes, from 1 to `max`.
pub fn parse_size(s: &str, max: u64) -> Result<u64, String> {
    let bad = || {
        format!(
            "bad size {}: expected a number of bytes (1 to {}) with an optional K, M or G",
            quoted_prefix(s),
            human_size(max)
        )
    };
    let (digits, mult): (&str, u64) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0 && *n <= max)
        .ok_or_else(bad)
}

/// A clap value parser over one of the parsers above whose error names
/// the option and quotes at most a short prefix of the value (clap's own
/// "invalid value" message would echo a value of any length whole).
#[derive(Debug)]
pub struct Checked<T>(pub fn(&str) -> Result<T, String>);

impl<T> Clone for Checked<T> {
    fn clone(&self) -> Self {
        Checked(self.0)
    }
}

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for Checked<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let name = arg.map(|a| a.to_string()).unwrap_or_else(|| "...".into());
        let fail = |text: &str, why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "invalid value {} for '{name}': {why}\n\nFor more information, try '--help'.\n",
                    quoted_prefix(text)
                ),
            )
            .with_cmd(cmd)
        };
        let text = value.to_string_lossy();
        if value.to_str().is_none() {
            return Err(fail(&text, "not UTF-8".into()));
        }
        (self.0)(&text).map_err(|why| fail(&text, why))
    }
}

/// `2G`, `512M`, `3K` or bytes, exact.
fn human_size(n: u64) -> String {
    for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// Seconds, possibly fractional, above 0 and at most a day.
/// Parses a number of seconds, more than 0 and at most a day (fractions
/// allowed): fpd's timeouts, and cmgrd's `--keepalive`/`--peer-timeout`.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!(
            "{s:?}: expected more than 0 and at most 86400 seconds"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1min").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration(".5us").unwrap(), Duration::from_nanos(500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_duration("000000000000000000000000005s").unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(
            parse_duration("365d").unwrap_err(),
            "\"365d\": unknown unit \"d\" (us, ms, s, min, h)"
        );
        assert_eq!(parse_duration("8760h").unwrap(), MAX_DURATION);
        for bad in ["fast", "3 parsecs", ".", "1.2.3", "", "s", "-1s", "1e3"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn huge_durations_are_errors_not_panics() {
        for huge in [
            "99999999999999999999s",
            "18446744073709551615",
            "18446744073709551615h",
            "8761h",
            "340282366920938463463374607431768211456",
        ] {
            let e = parse_duration(huge).unwrap_err();
            assert!(e.contains("too long a time span"), "{huge}: {e}");
        }
        let long = "9".repeat(10_000);
        let e = parse_duration(&long).unwrap_err();
        assert!(e.len() < 200, "{e}");
        assert!(e.contains("(10000 bytes)"), "{e}");
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_seconds("-3").unwrap(), Duration::ZERO);
        assert!(parse_seconds("5s").is_err());
        assert!(parse_seconds("inf").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("1e300").is_err());
        assert!(parse_seconds("99999999999999999999").is_err());
    }

    #[test]
    fn sizes() {
        let max = 1 << 31;
        assert_eq!(parse_size("64M", max).unwrap(), 64 << 20);
        assert_eq!(parse_size("2G", max).unwrap(), 2 << 30);
        assert_eq!(parse_size("4096", max).unwrap(), 4096);
        for bad in [
            "0",
            "3G",
            "",
            "K",
            "+5",
            "-1",
            "12Q",
            "18446744073709551615G",
            "1 M",
        ] {
            let e = parse_size(bad, max).unwrap_err();
            assert!(e.contains("1 to 2G"), "{bad}: {e}");
        }
        assert!(parse_size("é", max).is_err());
    }

    #[test]
    fn prefixes() {
        assert_eq!(quoted_prefix("ab"), "\"ab\"");
        let p = quoted_prefix(&"é".repeat(100));
        assert!(p.ends_with("... (200 bytes)"), "{p}");
    }
}

/// Property test, from a fixed seed: random and mutated time spans and
/// sizes never panic; what parses is in range and equals the same value
/// computed independently (in u128 nanoseconds), and whatever is out of
/// range is an error, not a wrapped value.
#[cfg(test)]
mod fuzz {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    const UNITS: &[(&str, u128)] = &[
        ("", 1_000_000_000),
        ("s", 1_000_000_000),
        ("sec", 1_000_000_000),
        ("ms", 1_000_000),
        ("msec", 1_000_000),
        ("us", 1_000),
        ("usec", 1_000),
        ("m", 60_000_000_000),
        ("min", 60_000_000_000),
        ("h", 3_600_000_000_000),
        ("hr", 3_600_000_000_000),
    ];
    const ALPHABET: &[char] = &[
        '0', '1', '9', '.', 's', 'm', 'h', 'u', 'K', 'M', 'G', '-', '+', 'e', ' ', '\t', 'é',
        '\u{0}', '_', 'x',
    ];

    fn mutate(s: &str, rng: &mut SmallRng) -> String {
        let mut chars: Vec<char> = s.chars().collect();
        for _ in 0..rng.random_range(1..=3) {
            let len = chars.len();
            match rng.random_range(0..4) {
                0 => chars.insert(
                    rng.random_range(0..=len),
                    ALPHABET[rng.random_range(0..ALPHABET.len())],
                ),
                1 if len > 0 => {
                    chars.remove(rng.random_range(0..len));
                }
                2 => chars.truncate(rng.random_range(0..=len)),
                _ if len > 0 => {
                    let i = rng.random_range(0..len);
                    let run: Vec<char> = chars[i..].iter().copied().take(8).collect();
                    let at = rng.random_range(0..=len);
                    chars.splice(at..at, run);
                }
                _ => {}
            }
        }
        chars.into_iter().collect()
    }

    #[test]
    fn durations_survive_random_input_and_agree_with_u128_arithmetic() {
        let mut rng = SmallRng::seed_from_u64(0x5eed_d0a7);
        let max = MAX_DURATION.as_nanos();
        let (mut ok, mut refused) = (0, 0);
        for _ in 0..60_000 {
            // A well-formed span, of any magnitude.
            let digits = rng.random_range(1..=24);
            let int: String = (0..digits)
                .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                .collect();
            let frac_len = if rng.random_bool(0.3) {
                rng.random_range(1..=12)
            } else {
                0
            };
            let frac: String = (0..frac_len)
                .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                .collect();
            let (unit, scale) = UNITS[rng.random_range(0..UNITS.len())];
            let text = if frac_len > 0 {
                format!("{int}.{frac}{unit}")
            } else {
                format!("{int}{unit}")
            };
            let whole: u128 = int.parse().unwrap();
            let mut frac_ns = 0u128;
            let mut place = scale;
            for d in frac.bytes() {
                place /= 10;
                frac_ns += u128::from(d - b'0') * place;
            }
            let expected = whole
                .checked_mul(scale)
                .and_then(|n| n.checked_add(frac_ns))
                .filter(|n| *n <= max);
            match (parse_duration(&text), expected) {
                (Ok(d), Some(ns)) => {
                    assert_eq!(d.as_nanos(), ns, "{text}");
                    ok += 1;
                }
                (Err(e), None) => {
                    assert!(e.contains("too long"), "{text}: {e}");
                    refused += 1;
                }
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
            // Its mutations: anything, but never a panic or an out-of-range
            // value, and an error quotes a short prefix only.
            let m = mutate(&text, &mut rng);
            match parse_duration(&m) {
                Ok(d) => assert!(d <= MAX_DURATION, "{m:?}"),
                Err(e) => assert!(e.len() < 200, "{m:?}: {e}"),
            }
            let _ = parse_seconds(&m);
            if let Ok(n) = parse_size(&m, 1 << 31) {
                assert!((1..=1 << 31).contains(&n), "{m:?}");
            }
        }
        assert!(
            ok > 10_000 && refused > 10_000,
            "{ok} parsed, {refused} refused"
        );
    }

    #[test]
    fn sizes_agree_with_u128_arithmetic() {
        let mut rng = SmallRng::seed_from_u64(0x512e);
        for _ in 0..30_000 {
            let n: u64 = match rng.random_range(0..3) {
                0 => rng.random_range(0..4096),
                1 => rng.random(),
                _ => rng.random_range(0..(1 << 34)),
            };
            let (suffix, mult) = [("", 1u128), ("K", 1 << 10), ("m", 1 << 20), ("G", 1 << 30)]
                [rng.random_range(0..4)];
            let text = format!("{n}{suffix}");
            let want = (u128::from(n) * mult)
                .try_into()
                .ok()
                .filter(|v: &u64| (1..=1 << 31).contains(v));
            assert_eq!(parse_size(&text, 1 << 31).ok(), want, "{text}");
        }
    }
}
