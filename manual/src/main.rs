//! `fpsync-manual OUTDIR`: writes every program's man page and shell
//! completions under OUTDIR (man1/, man8/, bash/, zsh/, fish/), as
//! scripts/setup.sh installs them. Exit codes: 0 written, 1 a file could not
//! be written, 2 a bad command line.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out] = args.as_slice() else {
        eprintln!("usage: fpsync-manual OUTDIR");
        return ExitCode::from(2);
    };
    match manual::write_all(&PathBuf::from(out)) {
        Ok(files) => {
            println!("fpsync-manual: {} files under {out}", files.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fpsync-manual: {}", common::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
