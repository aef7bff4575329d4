//! The manual as an operator reads it: every page rendered by `man -l`
//! (man-db and groff, as installed by scripts/setup.sh), naming its program
//! and every one of its options; every bash completion loaded by bash.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use manual::{PROGRAMS, SCRIPT_PAGES};

struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("fpsync-manual-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `man -l PAGE` as plain ASCII text, wide enough that nothing hyphenates.
fn man(page: &Path) -> String {
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("LC_ALL", "C")
        .env("MANWIDTH", "400")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .expect("man (man-db) is installed by scripts/setup.sh");
    assert!(
        out.status.success(),
        "man -l {}: {}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("NAME"), "{}: {text}", page.display());
    text
}

#[test]
fn every_page_renders_and_names_its_program_and_options() {
    let dir = Dir::new("pages");
    let written = manual::write_all(&dir.0).unwrap();
    let mut pages = BTreeSet::new();
    for p in PROGRAMS {
        let page = dir
            .0
            .join(format!("man{}/{}.{}", p.section, p.name, p.section));
        assert!(written.contains(&page), "{}", page.display());
        pages.insert(page.clone());
        let text = man(&page);
        assert!(
            text.contains(&format!("{}({})", p.name, p.section)),
            "{}: {text}",
            p.name
        );
        let cmd = (p.command)();
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                assert!(
                    text.contains(&format!("--{long}")),
                    "{}: no --{long}",
                    p.name
                );
            } else if let Some(short) = arg.get_short() {
                assert!(
                    text.contains(&format!("-{short}")),
                    "{}: no -{short}",
                    p.name
                );
            }
            if let Some(help) = arg.get_help() {
                // The first words of each option's help, as clap has them.
                let words: Vec<String> = help
                    .to_string()
                    .split_whitespace()
                    .take(3)
                    .map(str::to_owned)
                    .collect();
                assert!(
                    text.contains(&words.join(" ")),
                    "{}: {:?} missing",
                    p.name,
                    words
                );
            }
        }
        assert!(text.contains("SEE ALSO"), "{}", p.name);
        if p.section == 8 {
            assert!(
                text.contains("EXIT STATUS") && text.contains("ENVIRONMENT"),
                "{}",
                p.name
            );
        }
    }
    // What the issue asked by name.
    let cmgrd = man(&dir.0.join("man8/cmgrd.8"));
    assert!(cmgrd.contains("--disable-sync-ipv6"), "{cmgrd}");
    assert!(cmgrd.contains("--max-queue"), "{cmgrd}");
    // fpsync's subcommands have pages of their own.
    for sub in ["start", "stop", "status", "show", "ipsec", "logs"] {
        let text = man(&dir.0.join(format!("man1/fpsync-{sub}.1")));
        assert!(text.contains(&format!("fpsync-{sub}")), "{sub}: {text}");
    }
    let start = man(&dir.0.join("man1/fpsync-start.1"));
    assert!(start.contains("--timeout"), "{start}");
}

#[test]
fn the_scripts_pages_render() {
    for (name, section) in SCRIPT_PAGES {
        let page = repo().join(format!("etc/man/{name}.{section}"));
        let text = man(&page);
        assert!(text.contains(&format!("{name}({section})")), "{text}");
        for verb in ["start", "stop", "restart", "status"] {
            assert!(text.contains(verb), "{name}: {verb}");
        }
    }
    let cmgr = man(&repo().join("etc/man/cmgr.sh.8"));
    assert!(
        cmgr.contains("CMGR_OPTIONS") && cmgr.contains("/proc/PID/comm"),
        "{cmgr}"
    );
}

#[test]
fn the_unit_names_pages_that_exist() {
    let unit = std::fs::read_to_string(repo().join("etc/systemd/fpsyncd.service")).unwrap();
    let line = unit
        .lines()
        .find(|l| l.starts_with("Documentation="))
        .expect("a Documentation= line");
    let mut known: BTreeSet<String> = PROGRAMS
        .iter()
        .map(|p| format!("man:{}({})", p.name, p.section))
        .collect();
    known.extend(SCRIPT_PAGES.iter().map(|(n, s)| format!("man:{n}({s})")));
    for doc in line["Documentation=".len()..].split_whitespace() {
        assert!(known.contains(doc), "{doc} is not a page of the manual");
    }
}

#[test]
fn every_bash_completion_loads() {
    let dir = Dir::new("completions");
    manual::write_all(&dir.0).unwrap();
    for p in PROGRAMS {
        let file = dir.0.join("bash").join(p.name);
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}' && complete -p {}",
                file.display(),
                p.name
            ))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            p.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.trim_end().ends_with(p.name), "{}: {stdout}", p.name);
        // zsh's always names the program; fish's has a line per option
        // (none for daemonctl, which has only words).
        let zsh = dir
            .0
            .join(manual::completion_path("zsh".parse().unwrap(), p.name));
        assert!(std::fs::read_to_string(&zsh).unwrap().contains(p.name));
        let fish = dir
            .0
            .join(manual::completion_path("fish".parse().unwrap(), p.name));
        let fish = std::fs::read_to_string(&fish).unwrap();
        let options = (p.command)().get_arguments().any(|a| !a.is_positional());
        assert_eq!(
            fish.contains(&format!("complete -c {}", p.name)),
            options,
            "{fish}"
        );
    }
    // The completion completes: cmgrd's options after `cmgrd --disable-sync-i`.
    let file = dir.0.join("bash/cmgrd");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}'; COMP_WORDS=(cmgrd --disable-sync-ip); COMP_CWORD=1; \
             COMP_LINE='cmgrd --disable-sync-ip'; COMP_POINT=${{#COMP_LINE}}; \
             _cmgrd cmgrd --disable-sync-ip cmgrd; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        ))
        .output()
        .unwrap();
    let replies = String::from_utf8_lossy(&out.stdout);
    assert!(
        replies.lines().any(|l| l == "--disable-sync-ipv6")
            && replies.lines().any(|l| l == "--disable-sync-ipsec"),
        "{replies}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
