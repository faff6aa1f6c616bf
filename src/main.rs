//! The `text2img` command line. Errors go to stderr as one line; the exit code says why:
//! 2 usage, 3 a bad input file (weights, prompt file), 4 an output that cannot be written,
//! 5 a device that is not there, 1 anything else.

mod cli;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            eprintln!("{}", one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

/// clap's usage error on one line: its message and any list of values or missing arguments,
/// without the usage and help hints.
fn one_line(rendered: &str) -> String {
    let keep = |l: &&str| !(l.is_empty() || l.starts_with("Usage:") || l.starts_with("For more information"));
    rendered.lines().map(str::trim).filter(keep).collect::<Vec<_>>().join(" ")
}
