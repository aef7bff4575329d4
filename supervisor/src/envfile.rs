//! The seed's configuration files (`/etc/linux-fp-sync.env`,
//! `/etc/cmgr.env`): a small, strict subset of shell, parsed rather than
//! sourced, so that a wrong line is reported with its file and line and
//! nothing runs.
//!
//! Precedence, as the seed says: `: ${VAR:=value}` sets VAR only when it is
//! unset or empty (a variable already in the environment wins), and
//! `VAR=value` (or `export VAR=value`) always sets it (the file wins).
//! Values may be unquoted, "double quoted" (with `$VAR` / `${VAR}`
//! expanded) or 'single quoted' (literal). Comments start with `#`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a variable's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Environment,
    File { path: PathBuf, line: usize },
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Environment => write!(f, "the environment"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Default => write!(f, "the built-in default"),
        }
    }
}

/// A line the parser does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", path.display())]
pub struct ParseError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

/// Variables with their origins.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    map: HashMap<String, (String, Origin)>,
}

impl Vars {
    /// Starts from an environment.
    pub fn from_env<I: IntoIterator<Item = (String, String)>>(env: I) -> Vars {
        Vars {
            map: env
                .into_iter()
                .map(|(k, v)| (k, (v, Origin::Environment)))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(|(v, _)| v.as_str())
    }

    /// The value when set and not empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// The names of the variables set and not empty, in no order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map
            .iter()
            .filter(|(_, (v, _))| !v.is_empty())
            .map(|(k, _)| k.as_str())
    }

    pub fn origin(&self, name: &str) -> Origin {
        self.map
            .get(name)
            .map(|(_, o)| o.clone())
            .unwrap_or(Origin::Default)
    }

    pub fn set(&mut self, name: &str, value: String, origin: Origin) {
        self.map.insert(name.to_owned(), (value, origin));
    }

    /// Applies a file's text on top of these variables.
    pub fn apply(&mut self, path: &Path, text: &str) -> Result<(), ParseError> {
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let err = |message: String| ParseError {
                path: path.to_owned(),
                line,
                message,
            };
            let origin = Origin::File {
                path: path.to_owned(),
                line,
            };
            let s = raw.trim();
            if s.is_empty() || s.starts_with('#') {
                continue;
            }
            // Messages quote a short prefix of the line, never all of it.
            let q = common::units::quoted_prefix(s);
            if let Some(rest) = s.strip_prefix(':') {
                // : ${VAR:=value}  or  : ${VAR=value}
                let rest = rest.trim_start();
                let inner = rest
                    .strip_prefix("${")
                    .ok_or_else(|| err(format!("expected `: ${{VAR:=value}}`, found {q}")))?;
                let name_end = inner
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .ok_or_else(|| err(format!("unterminated `${{` in {q}")))?;
                let name = &inner[..name_end];
                check_name(name).map_err(&err)?;
                let after = &inner[name_end..];
                let (only_if_empty, value_text) = if let Some(v) = after.strip_prefix(":=") {
                    (true, v)
                } else if let Some(v) = after.strip_prefix('=') {
                    (false, v)
                } else {
                    let name = common::units::quoted_prefix(name);
                    return Err(err(format!(
                        "expected `:=` after the name {name} in {q} (as in `: ${{VAR:=value}}`)"
                    )));
                };
                let (value, rest) = self.word(value_text, Some('}')).map_err(&err)?;
                let rest = rest
                    .strip_prefix('}')
                    .ok_or_else(|| err(format!("missing `}}` in {q}")))?;
                trailing(rest).map_err(&err)?;
                let unset = match self.get(name) {
                    None => true,
                    Some(v) => only_if_empty && v.is_empty(),
                };
                if unset {
                    self.set(name, value, origin);
                }
                continue;
            }
            let body = s.strip_prefix("export ").map(str::trim_start).unwrap_or(s);
            let Some(eq) = body.find('=') else {
                return Err(err(format!(
                    "cannot parse {q}: expected VAR=value, : ${{VAR:=value}}, a comment or an empty line"
                )));
            };
            let name = &body[..eq];
            if name.contains(char::is_whitespace) {
                return Err(err(format!(
                    "cannot parse {q}: expected VAR=value, : ${{VAR:=value}}, a comment or an empty line"
                )));
            }
            check_name(name).map_err(&err)?;
            let (value, rest) = self.word(&body[eq + 1..], None).map_err(&err)?;
            trailing(rest).map_err(&err)?;
            self.set(name, value, origin);
        }
        Ok(())
    }

    /// Reads one shell word from `s` (stopping at whitespace, or at `stop`
    /// outside quotes), with quotes removed and variables expanded.
    fn word<'a>(&self, s: &'a str, stop: Option<char>) -> Result<(String, &'a str), String> {
        let mut out = String::new();
        let mut chars = s.char_indices().peekable();
        while let Some(&(i, c)) = chars.peek() {
            match c {
                c if Some(c) == stop => return Ok((out, &s[i..])),
                c if c.is_whitespace() && stop.is_none() => return Ok((out, &s[i..])),
                '\'' => {
                    chars.next();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        if c == '\'' {
                            closed = true;
                            break;
                        }
                        out.push(c);
                    }
                    if !closed {
                        return Err("unterminated single quote".into());
                    }
                }
                '"' => {
                    chars.next();
                    let mut closed = false;
                    let mut quoted = String::new();
                    while let Some((_, c)) = chars.next() {
                        match c {
                            '"' => {
                                closed = true;
                                break;
                            }
                            '\\' => {
                                if let Some((_, n)) = chars.next() {
                                    quoted.push('\\');
                                    quoted.push(n);
                                }
                            }
                            c => quoted.push(c),
                        }
                    }
                    if !closed {
                        return Err("unterminated double quote".into());
                    }
                    out += &self.expand(&quoted)?;
                }
                '\\' => {
                    chars.next();
                    if let Some((_, n)) = chars.next() {
                        out.push(n);
                    }
                }
                '$' => {
                    chars.next();
                    let mut end = s.len();
                    if let Some(&(_, '{')) = chars.peek() {
                        // ${NAME}: up to its closing brace.
                        let mut closed = false;
                        for (k, c) in chars.by_ref() {
                            if c == '}' {
                                end = k + 1;
                                closed = true;
                                break;
                            }
                        }
                        if !closed {
                            return Err("unterminated ${".into());
                        }
                    } else {
                        while let Some(&(k, c)) = chars.peek() {
                            if !(c.is_ascii_alphanumeric() || c == '_') {
                                end = k;
                                break;
                            }
                            chars.next();
                        }
                    }
                    out += &self.expand(&s[i..end])?;
                }
                c if matches!(c, ';' | '&' | '|' | '`' | '(' | ')' | '<' | '>') => {
                    return Err(format!(
                        "unsupported shell syntax {c:?}: quote the value (this file is parsed, not run)"
                    ))
                }
                c => {
                    out.push(c);
                    chars.next();
                }
            }
        }
        Ok((out, ""))
    }

    /// Expands `$VAR`, `${VAR}` and backslash escapes (unset variables are
    /// empty, as in the shell).
    fn expand(&self, s: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '$' => {
                    let name: String = if chars.peek() == Some(&'{') {
                        chars.next();
                        let mut name = String::new();
                        let mut closed = false;
                        for c in chars.by_ref() {
                            if c == '}' {
                                closed = true;
                                break;
                            }
                            name.push(c);
                        }
                        if !closed {
                            return Err("unterminated ${".into());
                        }
                        name
                    } else {
                        let mut name = String::new();
                        while let Some(&c) = chars.peek() {
                            if c.is_ascii_alphanumeric() || c == '_' {
                                name.push(c);
                                chars.next();
                            } else {
                                break;
                            }
                        }
                        if name.is_empty() {
                            out.push('$');
                            continue;
                        }
                        name
                    };
                    check_name(&name)?;
                    out += self.get(&name).unwrap_or("");
                }
                c => out.push(c),
            }
        }
        Ok(out)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a variable name",
            common::units::quoted_prefix(name)
        ))
    }
}

fn trailing(rest: &str) -> Result<(), String> {
    let rest = rest.trim();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(())
    } else {
        Err(format!(
            "unexpected {} after the value (quote values with spaces)",
            common::units::quoted_prefix(rest)
        ))
    }
}

/// Splits an options string into words, shell-style (quotes group words).
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                let mut closed = false;
                for q in chars.by_ref() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    cur.push(q);
                }
                if !closed {
                    return Err(format!(
                        "unterminated quote in {}",
                        common::units::quoted_prefix(s)
                    ));
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(env: &[(&str, &str)], text: &str) -> Result<Vars, ParseError> {
        let mut v = Vars::from_env(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        v.apply(Path::new("/etc/x.env"), text)?;
        Ok(v)
    }

    #[test]
    fn environment_wins_over_colon_equals() {
        let v = vars(&[("HA", "true")], ": ${HA:=false}\n: ${DEBUG:=0x3}\n").unwrap();
        assert_eq!(v.get("HA"), Some("true"));
        assert_eq!(v.get("DEBUG"), Some("0x3"));
        assert_eq!(v.origin("HA"), Origin::Environment);
        assert_eq!(
            v.origin("DEBUG"),
            Origin::File {
                path: "/etc/x.env".into(),
                line: 2
            }
        );
    }

    #[test]
    fn file_wins_with_plain_assignment() {
        let v = vars(&[("HA", "false")], "HA=true\nexport X=1 # comment\n").unwrap();
        assert_eq!(v.get("HA"), Some("true"));
        assert_eq!(v.get("X"), Some("1"));
    }

    #[test]
    fn colon_equals_fills_an_empty_variable_and_equals_does_not() {
        let v = vars(&[("A", ""), ("B", "")], ": ${A:=a}\n: ${B=b}\n: ${C=c}\n").unwrap();
        assert_eq!(v.get("A"), Some("a"));
        assert_eq!(v.get("B"), Some(""));
        assert_eq!(v.get("C"), Some("c"));
    }

    #[test]
    fn quotes_and_expansion() {
        let v = vars(
            &[("BASE", "-l 32M")],
            "OPTS=\"$BASE -R\"\nLIT='$BASE x'\n: ${Q:=\"a b\"}\nC=${BASE}x\n",
        )
        .unwrap();
        assert_eq!(v.get("OPTS"), Some("-l 32M -R"));
        assert_eq!(v.get("LIT"), Some("$BASE x"));
        assert_eq!(v.get("Q"), Some("a b"));
        assert_eq!(v.get("C"), Some("-l 32Mx"));
    }

    #[test]
    fn wrong_lines_name_file_and_line() {
        let e = vars(&[], "A=1\n\nthis is not an assignment\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(
            e.to_string().starts_with("/etc/x.env:3: cannot parse"),
            "{e}"
        );
        let e = vars(&[], "A=two words\n").unwrap_err();
        assert!(e.to_string().contains("quote values with spaces"), "{e}");
        let e = vars(&[], ": ${A:-x}\n").unwrap_err();
        assert!(e.to_string().contains("expected `:=`"), "{e}");
        let e = vars(&[], "1A=x\n").unwrap_err();
        assert!(e.to_string().contains("not a variable name"), "{e}");
        let e = vars(&[], "A=\"open\n").unwrap_err();
        assert!(e.to_string().contains("unterminated"), "{e}");
        let e = vars(&[], "A=$(rm -rf /)\n").unwrap_err();
        assert!(e.to_string().contains("unsupported shell syntax"), "{e}");
    }

    #[test]
    fn splits_option_words() {
        assert_eq!(
            split_words(" -l 32M  --x 'a b' \"c\"").unwrap(),
            vec!["-l", "32M", "--x", "a b", "c"]
        );
        assert!(split_words("'open").is_err());
    }
}
