//! The `text2img` command line.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "text2img", version, about = "GAN-INT-CLS text-to-image engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make or inspect datasets.
    #[command(subcommand)]
    Data(cli::data::DataCommand),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data(cmd) => cli::data::run(cmd),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        // 2 is clap's usage error; 3 a bad input file or dataset; 1 anything else.
        let bad_input = e.downcast_ref::<text2img::data::DataError>().is_some();
        std::process::exit(if bad_input { 3 } else { 1 });
    }
}
