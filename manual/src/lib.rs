//! The operator's manual: a man page and shell completions (bash, zsh,
//! fish) for every fpsync program, generated from the clap definition the
//! program itself parses with (`clap_mangen`, `clap_complete`), so that the
//! pages cannot drift from the options.
//!
//! Invariants: [`PROGRAMS`] names every binary an operator runs, with its
//! section (8: daemons, 1: clients); a client with subcommands (`fpsync`)
//! also gets one page per subcommand (`fpsync-start(1)`, ...). Every page
//! ends with SEE ALSO naming the other pages, and with FILES where the
//! program reads or writes any. The seed's shell scripts have hand-written
//! pages in `etc/man/` (not generated: they have no clap definition).

use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;

/// One program of the manual.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    pub name: &'static str,
    /// The man section: 8 for daemons, 1 for clients.
    pub section: u8,
    pub command: fn() -> Command,
    /// Roff paragraphs for a FILES section (empty: none).
    pub files: &'static str,
    /// Roff sections written after the options (EXIT STATUS,
    /// ENVIRONMENT, ...), each starting with `.SH`.
    pub extra: &'static str,
}

/// Every binary an operator runs.
pub const PROGRAMS: &[Program] = &[
    Program {
        name: "cmgrd",
        section: 8,
        command: instance::options::command,
        files:
            ".TP\n/etc/cmgr.env\nread by cmgr.sh(8), which builds cmgrd's command line from it\n\
                .TP\n/run/fpsync/cmgrd<id>.pid\nthe pid file when daemonized (--pid-file)\n\
                .TP\n/tmp/.cmgrd<id>\nthe console socket, for daemonctl(1)\n\
                .TP\n/run/fpsync/fpd<B>.sock\na local blade's FPC socket (--blade)\n",
        extra: concat!(
            ".SH \"EXIT STATUS\"\n0 after a clean stop (SIGTERM, SIGINT); 1 when cmgrd cannot run \
             (the reason on one line of standard error, and in the log); 2 for a bad command \
             line (the option named).\n",
            ".SH ENVIRONMENT\n",
            ".TP\nFPSYNC_LOG\nthe log filter when -d is not given; default info\n",
            ".TP\nFPSYNC_NO_JOURNAL\nlog to standard error even when a journal runs\n",
            ".TP\nFPSYNC_BUS_ADDRESS\nthe supervisor's bus, joined as org.fpsync.CacheManager1.I<id>\n",
        ),
    },
    Program {
        name: "fpd",
        section: 8,
        command: fastpath::cli::command,
        files: ".TP\n/run/fpsync/fpd<B>.sock\nthe default FPC socket of blade <B> (--listen)\n",
        extra: ".SH \"EXIT STATUS\"\n0 after a clean stop (SIGTERM, SIGINT); 1 when fpd cannot \
                start (the reason on one line of standard error); 2 for a bad command line.\n\
                .SH ENVIRONMENT\n\
                .TP\nFPSYNC_LOG\nthe log filter; default info\n\
                .TP\nFPSYNC_NO_JOURNAL\nlog to standard error even when a journal runs\n\
                .TP\nFPSYNC_BUS_ADDRESS\nthe supervisor's bus, joined as org.fpsync.FastPath1.B<B>\n",
    },
    Program {
        name: "fpsyncd",
        section: 8,
        command: supervisor::fpsyncd_cli::command,
        files: ".TP\n/etc/linux-fp-sync.env\nINSTANCES, BLADES, FPD_OPTIONS, FPSYNC_RUN_DIR and \
                the restart policy (or the file $CONF_FILE_linux_fp_sync names)\n\
                .TP\n/etc/cmgr.env, /etc/cmgr@<id>.env\neach instance's CMGR_NETNS, CMGR_BLADES, \
                CMGR_OPTIONS, DEBUG, BPF_OPT, HA_IPSEC, HA\n\
                .TP\n/run/fpsync/bus\nthe private bus's address, when fpsyncd runs one\n\
                .TP\n/etc/systemd/system/fpsyncd.service\nthe unit (Type=notify, WatchdogSec=): \
                fpsyncd sends READY=1 once every child has been started, STATUS= with how many \
                instances are in sync and blades running, and WATCHDOG=1 from its main loop \
                at half of $WATCHDOG_USEC\n",
        extra: ".SH \"EXIT STATUS\"\n0 after a clean stop (every child stopped, instances \
                first); 1 when fpsyncd cannot run, e.g. a configuration value out of range (the \
                variable, its file and line on one line of standard error); 2 for a bad command \
                line.\n\
                .SH ENVIRONMENT\n\
                .TP\nCONF_FILE_linux_fp_sync, CONF_FILE_cmgr\nthe configuration files instead \
                of /etc/linux-fp-sync.env and /etc/cmgr.env; any variable of those files, which \
                yields to the file's VAR=value but wins over its : ${VAR:=value}\n\
                .TP\nNOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID\nsystemd's notification \
                socket and watchdog (sd_notify(3)); not passed on to the children\n\
                .TP\nFPSYNC_LOG\nthe log filter; default info\n\
                .TP\nFPSYNC_NO_JOURNAL\nlog to standard error even when a journal runs\n",
    },
    Program {
        name: "fpsync",
        section: 1,
        command: supervisor::cli::command,
        files: ".TP\n/run/fpsync/bus\nthe supervisor's private bus address\n\
                .TP\n/etc/linux-fp-sync.env\nread by `fpsync start` to check the configuration \
                before starting fpsyncd\n",
        extra: ".SH \"EXIT STATUS\"\n0 done; 1 failed; 2 a bad command line; 3 status of a \
                stopped fpsyncd (as LSB scripts do).\n\
                .SH ENVIRONMENT\n\
                .TP\nFPSYNC_BUS_ADDRESS\nthe supervisor's bus, when --address is not given\n\
                .TP\nCONF_FILE_linux_fp_sync\nthe configuration file fpsync start checks\n",
    },
    Program {
        name: "daemonctl",
        section: 1,
        command: instance::cli::daemonctl_command,
        files: ".TP\n/tmp/.cmgrd<id>\nthe console socket of cmgrd -I <id>\n",
        extra: "",
    },
    Program {
        name: "fpsync-check",
        section: 1,
        command: instance::cli::check_command,
        files: ".TP\n/run/fpsync/fpd<B>.sock\nblade <B>'s FPC socket (--blade, --fpc)\n",
        extra: ".SH \"EXIT STATUS\"\n0 in sync (no output); 1 differences (one a line) or an \
                error; 2 a bad command line.\n",
    },
];

/// The hand-written pages of the seed's scripts (in `etc/man/`).
pub const SCRIPT_PAGES: &[(&str, u8)] = &[("cmgr.sh", 8), ("linux-fp-sync.sh", 8)];

#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ManualError> {
    let err = |source| ManualError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(path, bytes).map_err(err)
}

/// SEE ALSO: every other page of the manual, as `.BR name (s),` lines.
fn see_also(except: &str) -> String {
    let mut pages: Vec<(String, u8)> = PROGRAMS
        .iter()
        .map(|p| (p.name.to_owned(), p.section))
        .chain(SCRIPT_PAGES.iter().map(|(n, s)| ((*n).to_owned(), *s)))
        .filter(|(n, _)| n != except)
        .collect();
    pages.sort_by_key(|(n, s)| (*s, n.clone()));
    let mut out = String::from(".SH \"SEE ALSO\"\n");
    let last = pages.len().saturating_sub(1);
    for (i, (name, section)) in pages.iter().enumerate() {
        let sep = if i == last { "" } else { "," };
        out += &format!(".BR {name} ({section}){sep}\n");
    }
    out
}

/// The roff text of one page: clap_mangen's sections, then `extra`, FILES
/// and SEE ALSO.
pub fn render_page(cmd: &Command, section: u8, files: &str, extra: &str, top: &str) -> Vec<u8> {
    let man = clap_mangen::Man::new(cmd.clone())
        .section(section.to_string())
        .date(page_date())
        .source(format!("fpsync {}", env!("CARGO_PKG_VERSION")))
        .manual(if section == 8 {
            "System Administration"
        } else {
            "User Commands"
        });
    let mut out = Vec::new();
    man.render(&mut out).expect("writing to memory");
    out.extend_from_slice(extra.as_bytes());
    if !files.is_empty() {
        out.extend_from_slice(b".SH FILES\n");
        out.extend_from_slice(files.as_bytes());
    }
    out.extend_from_slice(see_also(top).as_bytes());
    out
}

/// The pages' date: `$SOURCE_DATE_EPOCH` (reproducible builds) or today,
/// as YYYY-MM-DD (UTC).
fn page_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    // Days to a civil date (Howard Hinnant's algorithm), for years 1970+.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A page per command and per visible subcommand (named `parent-sub`).
fn pages(
    cmd: Command,
    section: u8,
    files: &str,
    extra: &str,
    top: &str,
    out: &mut Vec<(String, Vec<u8>)>,
) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub.clone(), section, "", "", top, out);
    }
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned();
    let page = render_page(&cmd, section, files, extra, top);
    out.push((format!("{name}.{section}"), page));
}

/// Every generated page, as (file name, roff).
pub fn all_pages() -> Vec<(String, u8, Vec<u8>)> {
    let mut result = Vec::new();
    for p in PROGRAMS {
        let mut cmd = (p.command)().disable_help_subcommand(true);
        cmd.build();
        let mut out = Vec::new();
        pages(cmd, p.section, p.files, p.extra, p.name, &mut out);
        result.extend(out.into_iter().map(|(n, b)| (n, p.section, b)));
    }
    result
}

/// The completion script of `program` for `shell`.
pub fn completion(program: &Program, shell: Shell) -> Vec<u8> {
    let mut cmd = (program.command)();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, program.name, &mut out);
    out
}

/// Where a completion file goes under the output directory.
pub fn completion_path(shell: Shell, name: &str) -> PathBuf {
    match shell {
        Shell::Zsh => PathBuf::from("zsh").join(format!("_{name}")),
        Shell::Fish => PathBuf::from("fish").join(format!("{name}.fish")),
        other => PathBuf::from(other.to_string()).join(name),
    }
}

/// Writes `out/man1/*.1`, `out/man8/*.8`, `out/bash/NAME`, `out/zsh/_NAME`
/// and `out/fish/NAME.fish`; returns the files written.
pub fn write_all(out: &Path) -> Result<Vec<PathBuf>, ManualError> {
    let mut written = Vec::new();
    for (name, section, page) in all_pages() {
        let path = out.join(format!("man{section}")).join(name);
        write_file(&path, &page)?;
        written.push(path);
    }
    for p in PROGRAMS {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let path = out.join(completion_path(shell, p.name));
            write_file(&path, &completion(p, shell))?;
            written.push(path);
        }
    }
    Ok(written)
}
