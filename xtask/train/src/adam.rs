//! Adam (Kingma and Ba) whose state is plain named tensors, so a checkpoint holds it and a
//! resumed run continues exactly where it stopped.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

/// Adam's hyper-parameters and moment estimates.
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Steps taken so far.
    pub step: u64,
    /// First and second moments, by parameter name.
    pub m: BTreeMap<String, Tensor>,
    pub v: BTreeMap<String, Tensor>,
}

impl Adam {
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        }
    }

    /// One update of every parameter that has a gradient; clears the gradients.
    pub fn step(&mut self, params: &BTreeMap<String, Tensor>) {
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.step as i32);
        let c2 = 1.0 - b2.powi(self.step as i32);
        tch::no_grad(|| {
            for (name, p) in params {
                let g = p.grad();
                if !g.defined() || !p.requires_grad() {
                    continue;
                }
                let m = self.m.entry(name.clone()).or_insert_with(|| p.zeros_like());
                let v = self.v.entry(name.clone()).or_insert_with(|| p.zeros_like());
                *m = &*m * b1 + &g * (1.0 - b1);
                *v = &*v * b2 + (&g * &g) * (1.0 - b2);
                let update = (&*m / c1) / ((&*v / c2).sqrt() + self.eps) * self.lr;
                let _ = p.shallow_clone().f_sub_(&update).expect("in-place update");
                let _ = p.grad().zero_();
            }
        });
    }

    /// The moments as named tensors (`adam.m.NAME`, `adam.v.NAME`) for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let named = |prefix: &str, map: &BTreeMap<String, Tensor>| {
            map.iter()
                .map(|(k, t)| (format!("{prefix}.{k}"), t.to_kind(Kind::Float)))
                .collect::<Vec<_>>()
        };
        let mut out = named("adam.m", &self.m);
        out.extend(named("adam.v", &self.v));
        out
    }

    /// Restores moments written by [`Adam::state`].
    pub fn restore(&mut self, step: u64, tensors: &BTreeMap<String, Tensor>) {
        self.step = step;
        for (k, t) in tensors {
            if let Some(name) = k.strip_prefix("adam.m.") {
                self.m.insert(name.to_string(), t.shallow_clone());
            } else if let Some(name) = k.strip_prefix("adam.v.") {
                self.v.insert(name.to_string(), t.shallow_clone());
            }
        }
    }
}
