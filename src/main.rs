//! The `text2img` command line. Errors go to stderr as one line; the exit code says why:
//! 2 usage, 3 a bad input file (weights, prompt file), 4 an output that cannot be written,
//! 5 a device that is not there, 1 anything else.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}
