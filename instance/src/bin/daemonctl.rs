//! `daemonctl cmgrd[<id>] [command...]`: the cache manager's console
//! client. With a command, prints its answer; without, reads commands from
//! standard input, one a line, until `quit` or end of input.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use instance::console::console_path;

fn usage() -> ExitCode {
    eprintln!("usage: daemonctl cmgrd[<id>] [command...]   (try: daemonctl cmgrd help)");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(daemon) = args.first() else {
        return usage();
    };
    let Some(id) = daemon.strip_prefix("cmgrd") else {
        eprintln!("daemonctl: unknown daemon {daemon:?}: only cmgrd[<id>] has a console");
        return ExitCode::from(2);
    };
    let instance = match id {
        "" => None,
        n => match n.parse::<u32>() {
            Ok(i) => Some(i),
            Err(_) => {
                eprintln!("daemonctl: bad instance id {n:?} in {daemon:?}");
                return ExitCode::from(2);
            }
        },
    };
    let path = console_path(instance);
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "daemonctl: cannot reach {daemon} at {}: {e}",
                path.display()
            );
            return ExitCode::from(1);
        }
    };
    let commands: Vec<String> = if args.len() > 1 {
        vec![args[1..].join(" ")]
    } else {
        std::io::stdin()
            .lock()
            .lines()
            .map_while(Result::ok)
            .collect()
    };
    match converse(stream, &commands) {
        Ok(failed) if failed => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("daemonctl: {daemon}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Sends each command and prints each answer (answers end with an empty
/// line). True when an answer was an error.
fn converse(stream: UnixStream, commands: &[String]) -> std::io::Result<bool> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for command in commands {
        writer.write_all(format!("{command}\n").as_bytes())?;
        if command.trim() == "quit" {
            break;
        }
        let mut first = true;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\n" {
                break;
            }
            if first && line.starts_with("error:") {
                failed = true;
            }
            first = false;
            out.write_all(line.as_bytes())?;
        }
    }
    Ok(failed)
}
