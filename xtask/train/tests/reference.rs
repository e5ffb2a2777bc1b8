//! The tch network reproduces the PyTorch reference: outputs within 1e-4, and the L1 loss's
//! gradients (`grad.*`, eval mode) within 1e-4 relative, for both small cases; the paper
//! case's output too.

use tch::{Device, Tensor};
use wavecrn_engine::{TensorFile, Weights};
use wavecrn_tests::{fixture, shared};
use wavecrn_train::model::Net;

fn tensor(file: &TensorFile, name: &str) -> Tensor {
    let t = file.get(name).unwrap();
    let dims: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    Tensor::from_slice(&t.data).view(dims.as_slice())
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

fn check(path: &std::path::Path, with_grads: bool) {
    let file = TensorFile::read(path).unwrap();
    let weights = Weights::read(path).unwrap();
    let mut net = Net::zeros(weights.config.clone(), Device::Cpu);
    net.load(&weights).unwrap();
    let input = tensor(&file, "input");
    let want = tensor(&file, "output");
    let got = net.forward(&input);
    let err = max_abs(&(&got - &want));
    eprintln!("{}: output within {err:.2e}", path.display());
    assert!(err <= 1e-4, "output differs by {err}");
    if !with_grads {
        return;
    }
    let (_, loss) = net.loss_and_backward(&input, &tensor(&file, "target"));
    let want_loss = file.get("loss").unwrap().data[0] as f64;
    assert!(
        (loss - want_loss).abs() <= 1e-5,
        "loss {loss} vs {want_loss}"
    );
    for (name, param) in net.params() {
        if name.ends_with("scale_x") {
            continue;
        }
        let want = tensor(&file, &format!("grad.{name}"));
        let got = param.grad();
        let scale = max_abs(&want).max(1e-12);
        let err = max_abs(&(&got - &want)) / scale;
        eprintln!("  grad.{name}: relative error {err:.2e}");
        assert!(err <= 1e-4, "grad.{name} differs by {err} relative");
    }
}

#[test]
fn small_bidirectional_forward_and_gradients_match() {
    check(&fixture("reference/small_bidir.safetensors"), true);
}

#[test]
fn small_causal_forward_and_gradients_match() {
    check(&fixture("reference/small_causal.safetensors"), true);
}

#[test]
fn paper_forward_matches() {
    if let Some(path) = shared("reference/paper_bidir.safetensors") {
        check(&path, false);
    }
}

#[test]
fn rnn_dropout_changes_the_loss_and_follows_the_seed() {
    let path = fixture("reference/small_bidir.safetensors");
    let file = TensorFile::read(&path).unwrap();
    let weights = Weights::read(&path).unwrap();
    let mut net = Net::zeros(weights.config.clone(), Device::Cpu);
    net.load(&weights).unwrap();
    let (x, y) = (tensor(&file, "input"), tensor(&file, "target"));
    let loss = |drop: f64, seed: i64| {
        tch::manual_seed(seed);
        let (_, l) = net.train_step(&x, &y, drop);
        for p in net.params().values() {
            let _ = p.grad().f_zero_();
        }
        l
    };
    let plain = loss(0.0, 1);
    assert!((plain - file.get("loss").unwrap().data[0] as f64).abs() < 1e-5);
    let (a, b, c) = (loss(0.5, 7), loss(0.5, 7), loss(0.5, 8));
    assert_eq!(a, b, "same seed, same masks");
    assert_ne!(a, plain);
    assert_ne!(a, c);
}
