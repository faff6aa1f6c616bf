//! Command-line verbs (clap) and the mapping of errors to exit codes.

mod bench;
mod data;
mod eval;
mod eval_style;
mod generate;
mod inspect;
mod interpolate;
mod style;
mod train;

use clap::{Parser, Subcommand};

/// Exit codes.
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_BAD_INPUT: u8 = 3;
pub const EXIT_OUTPUT: u8 = 4;
pub const EXIT_DEVICE: u8 = 5;
/// A training run stopped because its losses left any sane range (its last checkpoint kept).
pub const EXIT_DIVERGED: u8 = 6;
const EXIT_OTHER: u8 = 1;

/// A failed command: the message and the exit code.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl From<text2img::Error> for Failure {
    fn from(e: text2img::Error) -> Failure {
        use text2img::Error as E;
        let code = match &e {
            E::Weights { .. } | E::Config(_) | E::Io { .. } => EXIT_BAD_INPUT,
            E::Input(_) => EXIT_USAGE,
            E::Device(_) => EXIT_DEVICE,
            E::Shape(_) => EXIT_OTHER,
            E::Data(_) => EXIT_BAD_INPUT,
        };
        Failure { code, error: e.into() }
    }
}

/// Builds a failure with an explicit code.
pub fn fail(code: u8, msg: impl std::fmt::Display) -> Failure {
    Failure { code, error: anyhow::anyhow!("{msg}") }
}

/// text2img: text to 64×64 images with GAN-INT-CLS (Reed et al. 2016).
#[derive(Parser)]
#[command(name = "text2img", version, about, long_about = None)]
pub struct Cli {
    /// More detail on stderr (timings, weights).
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Generate images from captions.
    Generate(generate::GenerateArgs),
    /// Images between two captions at fixed noise, or between two noises for one caption.
    Interpolate(interpolate::InterpolateArgs),
    /// Print a weights file's config, networks and tensors, and check it.
    Inspect(inspect::InspectArgs),
    /// Write a built-in config's synthetic (untrained, deterministic) weights as a file.
    InitWeights(inspect::InitWeightsArgs),
    /// Time caption → image and the generator (llama-bench style rows).
    Bench(bench::BenchArgs),
    /// Make or inspect datasets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Train the char-CNN-RNN text encoder (DS-SJE) with a jointly trained image CNN.
    TrainEncoder(train::TrainEncoderArgs),
    /// Train GAN-INT-CLS (G and D) on a dataset with a frozen text encoder.
    Train(train::TrainArgs),
    /// Judge caption fidelity on `shapes`: background, colour, shape and size of generated images.
    Eval(eval::EvalArgs),
    /// Train the eval judge's shape classifier on real `shapes` images.
    TrainJudge(eval::TrainJudgeArgs),
    /// Train the style encoder S to invert a trained generator (z from an image).
    TrainStyle(train::TrainStyleArgs),
    /// Captions drawn in the style (background, pose) of given images: G(S(image), φ(caption)).
    StyleTransfer(style::StyleTransferArgs),
}

/// How chatty to be.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<(), Failure> {
    let v = match (cli.quiet, cli.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    match cli.command {
        Command::Generate(a) => generate::run(a, v),
        Command::Inspect(a) => inspect::run(a),
        Command::InitWeights(a) => inspect::run_init(a, v),
        Command::Interpolate(a) => interpolate::run(a, v),
        Command::Bench(a) => bench::run(a),
        Command::TrainEncoder(a) => train::run_encoder(a, v),
        Command::Train(a) => train::run_gan(a, v),
        Command::Eval(a) => eval::run_eval(a, v),
        Command::TrainJudge(a) => eval::run_train_judge(a, v),
        Command::TrainStyle(a) => train::run_style(a, v),
        Command::StyleTransfer(a) => style::run(a, v),
        Command::Data(cmd) => data::run(cmd).map_err(|e| {
            // A dataset problem is a bad input; anything else is generic.
            let code =
                if e.downcast_ref::<text2img::data::DataError>().is_some() { EXIT_BAD_INPUT } else { EXIT_OTHER };
            Failure { code, error: e }
        }),
    }
}
