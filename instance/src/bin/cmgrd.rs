//! `cmgrd`: the cache manager daemon (see `cmgrd -h`).

use std::process::ExitCode;

use instance::daemonize::{daemonize, PidFile, Readiness};
use instance::Options;

use common::error_chain as chain;

fn main() -> ExitCode {
    let matches = instance::options::command().get_matches();
    if matches.get_flag("compile-options") {
        print!("{}", instance::options::compile_options());
        return ExitCode::SUCCESS;
    }
    let options = Options::from_matches(&matches);
    if let Err(e) = options.install_tcp_policy() {
        eprintln!("cmgrd: {e}");
        return ExitCode::FAILURE;
    }
    // -d wins over an inherited FPSYNC_LOG; without it, FPSYNC_LOG (or info).
    if options.debug != 0 || std::env::var_os(common::logging::ENV_VAR).is_none() {
        // One thread so far: nothing reads the environment concurrently.
        std::env::set_var(common::logging::ENV_VAR, options.log_filter());
    }
    let mut readiness = if options.foreground {
        Readiness::foreground()
    } else {
        // With no journal, the daemon's logs go to a file beside its pid.
        let log =
            (!common::logging::journal_available()).then(|| options.pid_file.with_extension("log"));
        match daemonize(log.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("cmgrd: cannot daemonize: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    common::logging::init(&options.identifier());
    let pid_file = if options.foreground {
        None
    } else {
        match PidFile::write(&options.pid_file) {
            Ok(p) => Some(p),
            Err(e) => {
                let msg = format!("cmgrd: pid file {}: {e}", options.pid_file.display());
                readiness.fail(&msg);
                return ExitCode::FAILURE;
            }
        }
    };
    let result = instance::run(options, || readiness.ready());
    drop(pid_file);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("cmgrd: {}", chain(&e));
            tracing::error!("{msg}");
            eprintln!("{msg}");
            readiness.fail(&msg);
            ExitCode::FAILURE
        }
    }
}
