//! The one description of a WaveCRN network, shared by training, export and inference.
//!
//! Everything that shapes the arithmetic lives here; weight tensors are validated against it
//! and it travels inside every exported ONNX file as JSON metadata, so a loaded model
//! describes itself.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the SRU output becomes the feature mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskKind {
    /// `outfc(h)` used as is. This is what the authors' code (and the reference vectors) do.
    Linear,
    /// `tanh(outfc(h))`: the paper's "restricted feature mask" in [-1, 1].
    Tanh,
}

/// Shape of a WaveCRN network: conv encoder, SRU stack, mask, transposed-conv decoder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Sample rate the model was trained at, in Hz.
    pub sample_rate: u32,
    /// Conv encoder output channels (C); also each SRU direction's hidden size.
    pub channels: usize,
    /// Encoder/decoder kernel length in samples (96 = 6 ms at 16 kHz).
    pub kernel: usize,
    /// Encoder/decoder hop in samples (48 = 3 ms at 16 kHz).
    pub stride: usize,
    /// Number of stacked SRU layers.
    pub layers: usize,
    /// 2 for the paper's bidirectional SRU, 1 for the causal variant.
    pub directions: usize,
    /// How the mask is formed from the last SRU layer.
    pub mask: MaskKind,
}

impl Default for ModelConfig {
    /// The paper's configuration: 256 channels, 6 ms kernel, 3 ms hop, 6 bidirectional layers.
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            channels: 256,
            kernel: 96,
            stride: 48,
            layers: 6,
            directions: 2,
            mask: MaskKind::Linear,
        }
    }
}

/// Per-layer shape facts derived from a [`ModelConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SruLayerShape {
    /// Width of the layer input.
    pub input: usize,
    /// Hidden units per direction.
    pub hidden: usize,
    /// 1 or 2.
    pub directions: usize,
    /// Slices of U per unit: 3 (u0, u1, u2 with the input as skip) or 4 (plus a projected skip
    /// when the input width differs from the output width).
    pub k: usize,
}

impl SruLayerShape {
    /// Width of the layer output: the directions' hidden states side by side.
    pub fn output(&self) -> usize {
        self.directions * self.hidden
    }
}

impl ModelConfig {
    /// The paper's network with one direction: streams frame by frame with no lookahead.
    pub fn causal() -> Self {
        Self {
            directions: 1,
            ..Self::default()
        }
    }

    /// Hidden units per SRU direction (tied to the conv channels, as in WaveCRN).
    pub fn hidden(&self) -> usize {
        self.channels
    }

    /// Shape of SRU layer `i`.
    pub fn layer(&self, i: usize) -> SruLayerShape {
        let output = self.directions * self.hidden();
        let input = if i == 0 { self.channels } else { output };
        SruLayerShape {
            input,
            hidden: self.hidden(),
            directions: self.directions,
            k: if input == output { 3 } else { 4 },
        }
    }

    /// Encoder frames for an input of `samples` samples (a multiple of the stride).
    pub fn frames(&self, samples: usize) -> usize {
        samples / self.stride + 1
    }

    /// Checks that the numbers describe a network the engine can build.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::Config(why));
        if self.channels == 0 || self.layers == 0 {
            return bad("channels and layers must be positive".into());
        }
        if !(1..=2).contains(&self.directions) {
            return bad(format!(
                "directions must be 1 or 2, not {}",
                self.directions
            ));
        }
        if self.stride == 0 || self.kernel != 2 * self.stride {
            return bad(format!(
                "the kernel must be twice the stride (kernel {}, stride {}): the decoder only \
                 returns the input length then",
                self.kernel, self.stride
            ));
        }
        if self.sample_rate == 0 {
            return bad("sample rate must be positive".into());
        }
        Ok(())
    }

    /// Every weight tensor the network has, in a fixed order, with its shape. Names follow the
    /// PyTorch reference (`ConvBSRU`), so checkpoints and reference files load unchanged.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let c = self.channels;
        let mut out = vec![("conv.weight".to_string(), vec![c, 1, self.kernel])];
        for i in 0..self.layers {
            let l = self.layer(i);
            let p = |s: &str| format!("sru.rnn_lst.{i}.{s}");
            out.push((p("layer_norm.weight"), vec![l.input]));
            out.push((p("layer_norm.bias"), vec![l.input]));
            out.push((p("weight"), vec![l.input, l.directions * l.hidden * l.k]));
            out.push((p("weight_c"), vec![2 * l.output()]));
            out.push((p("bias"), vec![2 * l.output()]));
            out.push((p("scale_x"), vec![1]));
        }
        out.push((
            "outfc.weight".to_string(),
            vec![c, self.directions * self.hidden()],
        ));
        out.push(("deconv.weight".to_string(), vec![c, 1, self.kernel]));
        out
    }

    /// Number of trainable parameters (`scale_x` is a fixed buffer and not counted).
    pub fn parameter_count(&self) -> usize {
        self.parameter_shapes()
            .iter()
            .filter(|(n, _)| !n.ends_with("scale_x"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Serialises to the JSON stored in ONNX metadata.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("config serialises")
    }

    /// Parses the JSON stored in ONNX metadata.
    pub fn from_json(s: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(s)
            .map_err(|e| Error::Config(format!("model configuration is not valid JSON: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_configuration_has_the_papers_parameter_count() {
        assert_eq!(ModelConfig::default().parameter_count(), 4_654_592);
    }

    #[test]
    fn json_round_trips() {
        let cfg = ModelConfig {
            mask: MaskKind::Tanh,
            ..ModelConfig::causal()
        };
        assert_eq!(ModelConfig::from_json(&cfg.to_json()).unwrap(), cfg);
    }

    #[test]
    fn rejects_a_kernel_that_is_not_twice_the_stride() {
        let cfg = ModelConfig {
            kernel: 100,
            ..ModelConfig::default()
        };
        assert!(cfg.validate().is_err());
    }
}
