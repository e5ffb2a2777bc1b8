//! The trainer learns: a small network overfits one fixed batch, the optimiser is Adam as
//! LibTorch computes it, step for step.

use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};
use wavecrn_engine::ModelConfig;
use wavecrn_tests::fixture;
use wavecrn_train::adam::Adam;
use wavecrn_train::loss::{si_sdr_db, Weights};
use wavecrn_train::model::Net;

/// A trainer that cannot fit one batch has a bug: a 32-channel, 2-layer bidirectional
/// network fits two fixed 0.25 s crops of noisy speech to 30 dB SI-SDR in a few hundred
/// steps (a couple of seconds on one core).
#[test]
fn a_small_network_overfits_one_batch() {
    tch::set_num_threads(1);
    let clean =
        wavecrn_audio::folder::read_mono(&fixture("metrics").join("pesq_ref.wav"), 16000).unwrap();
    let noise =
        wavecrn_audio::folder::read_mono(&fixture("metrics").join("pesq_deg_babble0db.wav"), 16000)
            .unwrap();
    let crop = 84 * 48; // about 0.25 s, a whole number of hops
    let (mut x, mut y) = (vec![], vec![]);
    for start in [8000, 20000] {
        let c = &clean[start..start + crop];
        y.extend_from_slice(c);
        // The fixture's degraded file minus its clean one is real babble; 10 dB under it.
        x.extend(
            c.iter()
                .zip(&noise[start..start + crop])
                .map(|(c, n)| c + 0.3 * (n - c)),
        );
    }
    let shape = [2i64, 1, crop as i64];
    let (x, y) = (
        Tensor::from_slice(&x).view(shape),
        Tensor::from_slice(&y).view(shape),
    );
    let cfg = ModelConfig {
        channels: 32,
        layers: 2,
        ..ModelConfig::default()
    };
    let mut net = Net::zeros(cfg, Device::Cpu);
    wavecrn_train::init::initialise(&net, 3);
    net.loss = Weights {
        si_sdr: 0.02,
        ..Weights::default()
    };
    let input_db = f64::try_from(si_sdr_db(&x, &y).mean(Kind::Float)).unwrap();
    let mut adam = Adam::new(3e-3);
    let mut reached = f64::NEG_INFINITY;
    for step in 0..3000 {
        let (out, _) = net.train_step(&x, &y, 0.0);
        // A slowly falling rate, so the fit settles instead of rattling round its minimum.
        adam.lr = 3e-3 * 0.998f64.powi(step);
        adam.step(net.params());
        if step % 20 == 19 {
            reached = f64::try_from(si_sdr_db(&out, &y).mean(Kind::Float)).unwrap();
            if step % 200 == 199 {
                eprintln!("step {}: {reached:.1} dB", step + 1);
            }
            if reached >= 30.0 {
                break;
            }
        }
    }
    eprintln!("input {input_db:.1} dB, reached {reached:.1} dB");
    assert!(
        reached >= 30.0,
        "stuck at {reached:.1} dB (input {input_db:.1} dB)"
    );
}

/// The trainer's Adam and LibTorch's (`torch.optim.Adam` through tch) move the same
/// parameters identically over many steps of changing gradients and rates: bias correction
/// and epsilon included. The first steps, where bias correction matters most, and tiny
/// gradients, where epsilon does, are both in the run.
#[test]
fn the_optimiser_is_libtorchs_adam_step_for_step() {
    let vs = nn::VarStore::new(Device::Cpu);
    let init = Tensor::randn([3, 5], (Kind::Float, Device::Cpu));
    let theirs = vs.root().var_copy("w", &init);
    let mut opt = nn::Adam::default().build(&vs, 1e-3).unwrap();
    let ours = init.copy().set_requires_grad(true);
    let params = std::collections::BTreeMap::from([("w".to_string(), ours.shallow_clone())]);
    let mut adam = Adam::new(1e-3);
    tch::manual_seed(11);
    for step in 0..60 {
        // Gradients of every size, down to where eps dominates the denominator.
        let scale = 10f64.powi(-(step % 10));
        let g = Tensor::randn([3, 5], (Kind::Float, Device::Cpu)) * scale;
        let lr = 1e-3 * (1.0 + (step as f64 * 0.3).sin()).max(0.1);
        opt.set_lr(lr);
        opt.zero_grad();
        (&theirs * &g).sum(Kind::Float).backward();
        opt.step();
        adam.lr = lr;
        (&ours * &g).sum(Kind::Float).backward();
        adam.step(&params);
        let diff = f64::try_from((&theirs - &ours).abs().max()).unwrap();
        let moved = f64::try_from((&theirs - &init).abs().max()).unwrap();
        let size = f64::try_from(theirs.abs().max()).unwrap();
        // A few float32 roundings of the parameters' size (the two sum in other orders);
        // a missing bias correction or a misplaced epsilon is a sizeable share of a step.
        assert!(
            diff <= 1e-4 * moved + 4.0 * f32::EPSILON as f64 * size,
            "step {step}: {diff:e} apart after moving {moved:e}"
        );
    }
}
