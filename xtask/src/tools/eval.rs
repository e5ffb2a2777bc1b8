//! `cargo xtask eval`: the benchmark table (PESQ, CSIG, CBAK, COVL, SSNR, STOI, ...) for
//! models or enhanced files, on paired folders or on the fixed validation set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use wavecrn_audio::pairs::load_pairs as load_recordings;
use wavecrn_engine::{DeviceChoice, Model};
use wavecrn_metrics::spectrum::{self, LongTermSpectrum};
use wavecrn_metrics::validation::{self, Pair};
use wavecrn_metrics::{score_all, Scores, SAMPLE_RATE};

#[derive(clap::Args)]
pub struct Args {
    /// Model to evaluate (ONNX from `cargo xtask export`).
    #[arg(long, conflicts_with_all = ["compare", "enhanced"])]
    model: Option<PathBuf>,
    /// Several models side by side in one table.
    #[arg(long, num_args = 1.., conflicts_with = "enhanced")]
    compare: Vec<PathBuf>,
    /// Score the peers too, in the same run: RNNoise (see `peers`).
    #[arg(long)]
    peers: bool,
    /// Already enhanced files, named as the clean ones.
    #[arg(long)]
    enhanced: Option<PathBuf>,
    /// Noisy inputs (paired with --clean by file name). Without --noisy/--clean, the fixed
    /// validation set is built from --speech and --noise.
    #[arg(long, requires = "clean")]
    noisy: Option<PathBuf>,
    /// Clean references, named as the noisy files.
    #[arg(long, requires = "noisy")]
    clean: Option<PathBuf>,
    /// Clean speech for the validation set.
    #[arg(long, default_value = "../shared/data/speech/valid")]
    speech: PathBuf,
    /// Noise for the validation set.
    #[arg(long, default_value = "../shared/data/noise/valid")]
    noise: PathBuf,
    /// `restore`: score the restoration task instead: each validation pair's clean speech,
    /// sign-compressed (2-bit), is the input.
    #[arg(long, value_parser = ["denoise", "restore"], default_value = "denoise")]
    task: String,
    /// Score only the first N pairs.
    #[arg(long)]
    limit: Option<usize>,
    /// Write the means and the per-file scores as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the per-file scores as CSV.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Where the models run: `auto` takes an NVIDIA GPU when one is usable.
    #[arg(long, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Worker threads (default: every core).
    #[arg(long)]
    jobs: Option<usize>,
}

/// What is scored: the noisy input itself, a model's output, or files from a folder.
enum System {
    /// The input itself: `noisy`, or `sign input` for restoration.
    Input(&'static str),
    Model(String, Box<Model>),
    /// A folder of enhanced files, and its files by name (stem).
    Folder(PathBuf, BTreeMap<String, PathBuf>),
    /// RNNoise, through nnnoiseless.
    Rnnoise,
}

impl System {
    fn name(&self) -> String {
        match self {
            System::Input(label) => label.to_string(),
            System::Model(name, _) => name.clone(),
            System::Folder(dir, _) => dir.display().to_string(),
            System::Rnnoise => "RNNoise (nnnoiseless)".into(),
        }
    }
}

/// A whole file as 16 kHz mono.
fn read_16k_mono(path: &Path) -> Result<Vec<f32>> {
    wavecrn_audio::folder::read_mono(path, SAMPLE_RATE)
}

fn load_pairs(args: &Args) -> Result<Vec<Pair>> {
    let mut pairs = match (&args.noisy, &args.clean) {
        (Some(noisy), Some(clean)) => load_recordings(noisy, clean, SAMPLE_RATE)?
            .into_iter()
            .map(|r| Pair {
                name: r.name,
                clean: r.clean,
                noisy: r.noisy,
            })
            .collect(),
        _ => {
            let load = |dir: &Path| wavecrn_audio::folder::read_folder_mono(dir, SAMPLE_RATE);
            validation::mix(&load(&args.speech)?, &load(&args.noise)?, validation::SEED)
        }
    };
    if let Some(n) = args.limit {
        pairs.truncate(n);
    }
    if args.task == "restore" {
        pairs = validation::restore_pairs(pairs);
    }
    Ok(pairs)
}

/// One system's scores on one pair, and its output's long-term spectrum.
struct Scored {
    scores: Scores,
    spectrum: LongTermSpectrum,
}

fn score(system: &System, pair: &Pair) -> Result<Scored> {
    let test = match system {
        System::Input(_) => pair.noisy.clone(),
        System::Model(_, model) => model.denoise(&pair.noisy, 1)?,
        System::Folder(dir, files) => {
            let file = files
                .get(&pair.name)
                .with_context(|| format!("{} has no file named {}", dir.display(), pair.name))?;
            let mut x = read_16k_mono(file)?;
            x.resize(pair.clean.len(), 0.0);
            x
        }
        System::Rnnoise => crate::tools::peers::rnnoise(&pair.noisy)?,
    };
    let mut spectrum = LongTermSpectrum::new(SAMPLE_RATE);
    spectrum.add(&test);
    Ok(Scored {
        scores: score_all(&pair.clean, &test).with_context(|| pair.name.clone())?,
        spectrum,
    })
}

pub fn run(args: Args) -> Result<()> {
    let input = if args.task == "restore" {
        "sign input"
    } else {
        "noisy"
    };
    let mut systems = vec![System::Input(input)];
    let (options, note) = args.device.load_options()?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    for path in args.model.iter().chain(&args.compare) {
        let model = Model::load_with(path, &options)?;
        systems.push(System::Model(
            path.file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            Box::new(model),
        ));
    }
    if let Some(dir) = &args.enhanced {
        let files = wavecrn_audio::folder::audio_files(dir)?
            .into_iter()
            .map(|f| (wavecrn_audio::folder::stem(&f), f))
            .collect();
        systems.push(System::Folder(dir.clone(), files));
    }
    if args.peers {
        anyhow::ensure!(
            args.task == "denoise",
            "the peers are denoisers: --peers scores the denoising task only"
        );
        systems.push(System::Rnnoise);
    }
    let started = Instant::now();
    let pairs = load_pairs(&args)?;
    let loaded = started.elapsed().as_secs_f64();

    let jobs: Vec<(usize, usize)> = (0..systems.len())
        .flat_map(|s| (0..pairs.len()).map(move |p| (s, p)))
        .collect();
    let results: Vec<Mutex<Option<Result<Scored>>>> =
        jobs.iter().map(|_| Mutex::new(None)).collect();
    let bar = ProgressBar::new(jobs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} scored  eta {eta}")
            .expect("valid template"),
    );
    let next = AtomicUsize::new(0);
    let threads = args.jobs.unwrap_or_else(wavecrn_engine::offline::cores);
    let scoring = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(sys, pair)) = jobs.get(i) else {
                    break;
                };
                *results[i].lock().unwrap() = Some(score(&systems[sys], &pairs[pair]));
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    let took = scoring.elapsed().as_secs_f64();

    let mut per_system: Vec<Vec<Scores>> = vec![vec![]; systems.len()];
    let mut spectra = vec![LongTermSpectrum::new(SAMPLE_RATE); systems.len()];
    for ((sys, _), r) in jobs.iter().zip(results) {
        let scored = r.into_inner().unwrap().expect("every job ran")?;
        per_system[*sys].push(scored.scores);
        for (sum, p) in spectra[*sys].power.iter_mut().zip(&scored.spectrum.power) {
            *sum += p;
        }
    }
    let mut clean = LongTermSpectrum::new(SAMPLE_RATE);
    for p in &pairs {
        clean.add(&p.clean);
    }
    let band_errors: Vec<[f64; 7]> = spectra
        .iter()
        .map(|s| spectrum::band_errors_db(&clean, s))
        .collect();
    let audio_s = pairs.iter().map(|p| p.clean.len()).sum::<usize>() as f64 / SAMPLE_RATE as f64;
    print_table(&systems, &per_system);
    println!();
    print_band_errors(&systems, &band_errors);
    if args.task == "denoise" {
        println!();
        print_noise_types(&systems, &per_system, &pairs);
        let ambient: Vec<usize> = (0..pairs.len())
            .filter(|&i| validation::is_ambient(&pairs[i].name))
            .collect();
        if !ambient.is_empty() {
            println!();
            println!(
                "ambient noise only ({} pairs: street, cafe, household, vehicles, machines, stationary):",
                ambient.len()
            );
            let subset: Vec<Vec<Scores>> = per_system
                .iter()
                .map(|s| ambient.iter().map(|&i| s[i]).collect())
                .collect();
            print_table(&systems, &subset);
        }
    }
    println!(
        "{} pairs, {:.0} s of audio; loading {loaded:.1} s, enhancing and scoring {took:.1} s on {threads} thread(s)",
        pairs.len(),
        audio_s
    );
    if let Some(path) = &args.json {
        write_json(path, &systems, &per_system, &band_errors, &pairs)?;
    }
    if let Some(path) = &args.csv {
        write_csv(path, &systems, &per_system, &pairs)?;
    }
    Ok(())
}

const COLUMNS: [&str; 9] = [
    "PESQ", "PESQ-NB", "CSIG", "CBAK", "COVL", "SSNR", "STOI", "ESTOI", "SI-SDR",
];

fn print_table(systems: &[System], scores: &[Vec<Scores>]) {
    let width = name_width(systems);
    print!("{:<width$}", "");
    for c in COLUMNS {
        print!("{c:>9}");
    }
    println!();
    for (system, s) in systems.iter().zip(scores) {
        print!("{:<width$}", system.name());
        for (_, v) in Scores::mean(s).fields() {
            print!("{v:>9.3}");
        }
        println!();
    }
}

fn name_width(systems: &[System]) -> usize {
    systems
        .iter()
        .map(|s| s.name().len())
        .max()
        .unwrap_or(5)
        .max(6)
}

/// The long-term spectrum of each system's output over the clean speech's, per band, in dB
/// (0: the clean level; the noisy row is what the noise adds).
fn print_band_errors(systems: &[System], errors: &[[f64; 7]]) {
    let width = name_width(systems);
    println!("spectral error, output over clean speech (dB, long-term spectrum):");
    print!("{:<width$}", "");
    for band in spectrum::BANDS {
        print!("{:>9}", spectrum::band_label(band));
    }
    println!();
    for (system, e) in systems.iter().zip(errors) {
        print!("{:<width$}", system.name());
        for v in e {
            print!("{v:>9.2}");
        }
        println!();
    }
}

/// Mean PESQ and SI-SDR per kind of noise (`validation::NOISE_TYPES`), per system.
fn print_noise_types(systems: &[System], scores: &[Vec<Scores>], pairs: &[Pair]) {
    println!("by noise type, PESQ / SI-SDR (dB):");
    let label = validation::NOISE_TYPES
        .iter()
        .map(|t| t.len())
        .max()
        .unwrap_or(0)
        + 6;
    let col = name_width(systems).max(14) + 2;
    print!("{:<label$}", "");
    for s in systems {
        print!("{:>col$}", s.name());
    }
    println!();
    for kind in validation::NOISE_TYPES {
        let members: Vec<usize> = (0..pairs.len())
            .filter(|&i| validation::noise_type(&pairs[i].name) == kind)
            .collect();
        if members.is_empty() {
            continue;
        }
        print!("{:<label$}", format!("{kind} ({})", members.len()));
        for s in scores {
            let n = members.len() as f64;
            let pesq = members.iter().map(|&i| s[i].pesq).sum::<f64>() / n;
            let sdr = members.iter().map(|&i| s[i].si_sdr).sum::<f64>() / n;
            print!("{:>col$}", format!("{pesq:.2} / {sdr:5.2}"));
        }
        println!();
    }
}

fn means_json(s: &[Scores]) -> serde_json::Map<String, serde_json::Value> {
    let mut m: serde_json::Map<String, serde_json::Value> = Scores::mean(s)
        .fields()
        .iter()
        .map(|(k, v)| (k.to_string(), (*v).into()))
        .collect();
    m.insert("files".into(), s.len().into());
    m
}

fn write_json(
    path: &Path,
    systems: &[System],
    scores: &[Vec<Scores>],
    band_errors: &[[f64; 7]],
    pairs: &[Pair],
) -> Result<()> {
    let entry = |sys: usize| {
        let mut m = means_json(&scores[sys]);
        m.insert("name".into(), systems[sys].name().into());
        let bands: serde_json::Map<String, serde_json::Value> = spectrum::BANDS
            .iter()
            .zip(band_errors[sys])
            .map(|(band, e)| (spectrum::band_label(*band), e.into()))
            .collect();
        m.insert("band_error_db".into(), bands.into());
        let per_file: Vec<serde_json::Value> = pairs
            .iter()
            .zip(&scores[sys])
            .map(|(p, s)| {
                let mut f: serde_json::Map<String, serde_json::Value> = s
                    .fields()
                    .iter()
                    .map(|(k, v)| (k.to_string(), (*v).into()))
                    .collect();
                f.insert("file".into(), p.name.clone().into());
                f.into()
            })
            .collect();
        m.insert("per_file".into(), per_file.into());
        m
    };
    // The first evaluated system's means sit at the top level; every system is listed too.
    let mut top = entry(systems.len().min(2) - 1);
    top.insert("noisy".into(), entry(0).into());
    top.insert(
        "systems".into(),
        (0..systems.len())
            .map(|i| serde_json::Value::from(entry(i)))
            .collect::<Vec<_>>()
            .into(),
    );
    let text = serde_json::to_string_pretty(&top)?;
    wavecrn_engine::io::write_atomically(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn write_csv(
    path: &Path,
    systems: &[System],
    scores: &[Vec<Scores>],
    pairs: &[Pair],
) -> Result<()> {
    let mut text = String::from("system,file");
    for (k, _) in Scores::default().fields() {
        text += &format!(",{k}");
    }
    text.push('\n');
    for (system, s) in systems.iter().zip(scores) {
        for (pair, row) in pairs.iter().zip(s) {
            text += &format!(
                "\"{}\",\"{}\"",
                system.name().replace('"', "\"\""),
                pair.name.replace('"', "\"\"")
            );
            for (_, v) in row.fields() {
                text += &format!(",{v}");
            }
            text.push('\n');
        }
    }
    wavecrn_engine::io::write_atomically(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
