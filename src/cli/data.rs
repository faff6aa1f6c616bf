//! `text2img data make|inspect`: build the `shapes` dataset, or report on any dataset folder.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;

use text2img::data::inspect::{contact_sheet, inspect};
use text2img::data::shapes::{make_shapes, ShapesConfig, DEFAULT_IMAGES};
use text2img::data::{Dataset, DecodeLimits};

/// The `data` verbs.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Generate a dataset (only `shapes` is built in).
    Make {
        /// Which dataset to make.
        #[arg(value_enum)]
        which: MakeWhich,
        /// Output folder (created if missing).
        #[arg(long, short = 'o')]
        out: PathBuf,
        /// Number of images (spread evenly over the 80 classes).
        #[arg(long, short = 'n', default_value_t = DEFAULT_IMAGES as u64,
              value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        images: u64,
        /// Seed: the same seed gives the same bytes.
        #[arg(long, short = 's', default_value_t = 0)]
        seed: u64,
    },
    /// Report classes, images, captions, problems; optionally write a contact sheet.
    Inspect {
        /// Dataset folder (CUB/Oxford-102 layout, a shapes set, or a caption folder).
        dir: PathBuf,
        /// Write a PNG contact sheet of samples here (first captions go to FILE.txt).
        #[arg(long)]
        sheet: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Exit with an error when more than this fraction of samples is bad.
        #[arg(long)]
        max_bad_fraction: Option<f64>,
    },
}

/// Datasets `data make` can generate.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MakeWhich {
    Shapes,
}

/// Runs one `data` verb.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Make { which: MakeWhich::Shapes, out, images, seed } => make(out, images, seed),
        DataCommand::Inspect { dir, sheet, json, max_bad_fraction } => run_inspect(dir, sheet, json, max_bad_fraction),
    }
}

fn make(out: PathBuf, images: u64, seed: u64) -> anyhow::Result<()> {
    let images = usize::try_from(images).context("--images too large")?;
    let t = Instant::now();
    let n = make_shapes(&out, &ShapesConfig { images, seed })?;
    eprintln!("wrote {n} images to {} in {:.2} s", out.display(), t.elapsed().as_secs_f64());
    Ok(())
}

fn run_inspect(dir: PathBuf, sheet: Option<PathBuf>, json: bool, max_bad_fraction: Option<f64>) -> anyhow::Result<()> {
    let limits = DecodeLimits::default();
    let mut ds = Dataset::open(&dir)?;
    let report = inspect(&mut ds, &limits);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    if let Some(sheet) = sheet {
        let txt = contact_sheet(&ds, &sheet, 8, 8, 64, &limits)?;
        eprintln!("contact sheet {} (captions in {})", sheet.display(), txt.display());
    }
    if let Some(max) = max_bad_fraction {
        ds.check_bad_fraction(max)?;
    }
    Ok(())
}
