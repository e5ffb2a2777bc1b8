//! `wavecrn-train trace`: a short run with everything written out (the initial weights, every
//! batch, the loss after each step), so that another trainer can replay it from the same
//! start on the same data and the two loss curves can be compared step by step
//! (`tests/python/replay_training.py` replays it on the original PyTorch + sru code with
//! `torch.optim.Adam`). The paper's recipe: L1 loss, Adam at a constant rate, no dropout.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tch::{Device, Tensor};
use wavecrn_engine::io::write_atomically;
use wavecrn_engine::ModelConfig;

use crate::adam::Adam;
use crate::data::{self, Mixing, Source, Task};
use crate::model::Net;

#[derive(Clone, Debug, clap::Args)]
pub struct TraceArgs {
    /// Clean speech folders.
    #[arg(long, num_args = 1.., default_value = "../shared/data/speech/train")]
    pub speech: Vec<PathBuf>,
    /// Noise folders.
    #[arg(long, num_args = 1.., default_value = "../shared/data/noise/train")]
    pub noise: Vec<PathBuf>,
    /// Where the trace goes: `init.safetensors`, `batches.safetensors`, `losses.json`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    #[arg(long, default_value_t = 64)]
    pub channels: usize,
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Seconds per example.
    #[arg(long, default_value_t = 0.5)]
    pub seconds: f64,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn trace(a: TraceArgs) -> Result<()> {
    let cfg = ModelConfig {
        channels: a.channels,
        layers: a.layers,
        ..ModelConfig::default()
    };
    cfg.validate()?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let rate = cfg.sample_rate;
    let source = Source::mixtures(
        data::load_folders(&a.speech, rate)?,
        data::load_folders(&a.noise, rate)?,
    );
    let crop = ((a.seconds * rate as f64) as usize).div_ceil(cfg.stride) * cfg.stride;
    let mixing = Mixing {
        task: Task::Denoise,
        crop,
        batch: a.batch,
        snr: (0.0, 15.0),
        gain_db: (-25.0, -1.0),
        clip: 0.0,
        babble: 0.0,
        talkers: (1, 6),
        augment: data::Augmentation::default(),
    };
    let net = Net::zeros(cfg.clone(), Device::Cpu);
    crate::init::initialise(&net, a.seed);
    // The reference files' keys, which `sru_baseline.load_case` reads.
    let meta = [
        ("conv_channels", cfg.channels.to_string()),
        ("num_layers", cfg.layers.to_string()),
        ("lr", a.lr.to_string()),
    ];
    let weights: Vec<(String, Tensor)> = net
        .params()
        .iter()
        .map(|(k, t)| (k.clone(), t.shallow_clone()))
        .collect();
    crate::checkpoint::save(&a.out.join("init.safetensors"), &cfg, &weights, &meta)?;
    let mut adam = Adam::new(a.lr);
    let (mut xs, mut ys, mut losses) = (vec![], vec![], vec![]);
    let shape = [a.batch as i64, 1, crop as i64];
    for step in 0..a.steps {
        let b = data::draw(&source, &mixing, a.seed, step as u64);
        let x = Tensor::from_slice(&b.noisy).view(shape);
        let y = Tensor::from_slice(&b.clean).view(shape);
        let (_, loss) = net.train_step(&x, &y, 0.0);
        adam.step(net.params());
        losses.push(loss);
        xs.push(x);
        ys.push(y);
    }
    let batches = vec![
        ("noisy".to_string(), Tensor::stack(&xs, 0)),
        ("clean".to_string(), Tensor::stack(&ys, 0)),
    ];
    crate::checkpoint::save(&a.out.join("batches.safetensors"), &cfg, &batches, &meta)?;
    let text = serde_json::to_string_pretty(&serde_json::json!({
        "steps": a.steps, "lr": a.lr, "channels": a.channels, "layers": a.layers,
        "batch": a.batch, "samples": crop, "loss": losses,
    }))?;
    write_atomically(&a.out.join("losses.json"), text.as_bytes())?;
    eprintln!(
        "traced {} steps: loss {:.5} -> {:.5}; replay with tests/python/replay_training.py {}",
        a.steps,
        losses[0],
        losses[losses.len() - 1],
        a.out.display()
    );
    Ok(())
}
