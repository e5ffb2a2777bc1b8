//! Reads a network's weights back out of an ONNX file written by [`super::export`], in
//! the reference names and layouts: the inverse of the exporter, so a shipped model (float32
//! or float16 storage) can seed training again when no checkpoint is left.

use std::collections::BTreeMap;
use std::collections::HashMap;

use tract_onnx::pb;

use super::export::float_values;
use super::{decode, read_config, HALF_SUFFIX};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::weights::{Tensor, Weights};

/// The configuration and the float initializers (float16 ones widened, under their float32
/// names) of an ONNX file written by the exporter, taken out one by one with their sizes
/// checked. The causal stream stage reads its weights through this too.
pub(crate) struct StoredWeights {
    pub config: ModelConfig,
    tensors: HashMap<String, Vec<f32>>,
}

impl StoredWeights {
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let proto = decode(bytes)?;
        let config = read_config(&proto)?;
        let graph = proto.graph.ok_or_else(|| Error::Model("no graph".into()))?;
        let mut tensors = HashMap::new();
        for t in &graph.initializer {
            use pb::tensor_proto::DataType;
            let name = match t.name.strip_suffix(HALF_SUFFIX) {
                Some(base) if t.data_type == DataType::Float16 as i32 => base,
                _ if t.data_type == DataType::Float as i32 => &t.name,
                _ => continue,
            };
            tensors.insert(name.to_string(), float_values(t));
        }
        Ok(Self { config, tensors })
    }

    /// The tensor `name`, which must hold `len` values.
    pub fn take(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| Error::Model(format!("the model has no tensor {name}")))?;
        if t.len() != len {
            return Err(Error::Model(format!(
                "{name} holds {} values, expected {len}",
                t.len()
            )));
        }
        Ok(t)
    }
}

/// The weights of the exported network in `bytes`.
pub fn weights_from_onnx(bytes: &[u8]) -> Result<Weights> {
    let mut stored = StoredWeights::parse(bytes)?;
    let config = stored.config.clone();
    let mut take = |name: &str, len: usize| stored.take(name, len);
    let (c, kernel, hidden) = (config.channels, config.kernel, config.hidden());
    let dh = config.directions * hidden;
    let mut tensors = BTreeMap::new();
    let mut put = |name: String, shape: Vec<usize>, data: Vec<f32>| {
        tensors.insert(name, Tensor::new(shape, data));
    };
    put(
        "conv.weight".into(),
        vec![c, 1, kernel],
        take("conv.weight", c * kernel)?,
    );
    put(
        "deconv.weight".into(),
        vec![c, 1, kernel],
        take("deconv.weight", c * kernel)?,
    );
    // Stored (dh, c) for the graph's MatMul; the reference's Linear holds (c, dh).
    let t = take("outfc.weight.transposed", dh * c)?;
    let outfc = (0..c)
        .flat_map(|o| (0..dh).map(move |j| (o, j)))
        .map(|(o, j)| t[j * c + o])
        .collect();
    put("outfc.weight".into(), vec![c, dh], outfc);
    for i in 0..config.layers {
        let l = config.layer(i);
        let (h, dirs, k) = (l.hidden, l.directions, l.k);
        let p = |s: &str| format!("sru.rnn_lst.{i}.{s}");
        put(
            p("layer_norm.weight"),
            vec![l.input],
            take(&p("layer_norm.weight"), l.input)?,
        );
        put(
            p("layer_norm.bias"),
            vec![l.input],
            take(&p("layer_norm.bias"), l.input)?,
        );
        // Columns back from [d][k][unit] to the reference's [d][unit][k].
        let cols = dirs * h * k;
        let gate_major = take(&p("weight.gate_major"), l.input * cols)?;
        let mut w = vec![0.0; gate_major.len()];
        for row in 0..l.input {
            for d in 0..dirs {
                for j in 0..h {
                    for kk in 0..k {
                        w[row * cols + (d * h + j) * k + kk] =
                            gate_major[row * cols + (d * k + kk) * h + j];
                    }
                }
            }
        }
        put(p("weight"), vec![l.input, cols], w);
        if k == 3 {
            put(p("scale_x"), vec![1], take(&p("scale_x"), 1)?);
        }
        // [gate][direction][unit], gates f then r.
        let (mut wc, mut bias) = (vec![0.0; 2 * dirs * h], vec![0.0; 2 * dirs * h]);
        for d in 0..dirs {
            for (gate, g) in ["f", "r"].iter().enumerate() {
                let at = (gate * dirs + d) * h;
                wc[at..at + h].copy_from_slice(&take(&p(&format!("v_{g}.d{d}")), h)?);
                bias[at..at + h].copy_from_slice(&take(&p(&format!("b_{g}.d{d}")), h)?);
            }
        }
        put(p("weight_c"), vec![2 * dirs * h], wc);
        put(p("bias"), vec![2 * dirs * h], bias);
    }
    Weights::new(config, tensors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_file::{model_info, store_weights_as_f16, to_onnx_bytes, ModelInfo};

    /// Random weights of a configuration, every value distinct so a mixed-up layout shows
    /// (but `scale_x` 1 where a layer has no skip path to scale: the graph leaves it out).
    fn random_weights(config: ModelConfig) -> Weights {
        let mut seed = 1u32;
        let tensors = config
            .parameter_shapes()
            .into_iter()
            .map(|(name, shape)| {
                let n = shape.iter().product();
                let unused = (0..config.layers)
                    .any(|i| config.layer(i).k != 3 && name == format!("sru.rnn_lst.{i}.scale_x"));
                if unused {
                    return (name, Tensor::new(shape, vec![1.0]));
                }
                let data = (0..n)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                    })
                    .collect();
                (name, Tensor::new(shape, data))
            })
            .collect();
        Weights::new(config, tensors).unwrap()
    }

    #[test]
    fn an_export_reads_back_to_the_same_weights() {
        let configs = [
            ModelConfig {
                channels: 8,
                layers: 3,
                ..ModelConfig::default()
            },
            ModelConfig {
                channels: 8,
                layers: 2,
                ..ModelConfig::causal()
            },
        ];
        for config in configs {
            let w = random_weights(config);
            let bytes = to_onnx_bytes(&w, &ModelInfo::default());
            let back = weights_from_onnx(&bytes).unwrap();
            assert_eq!(back.config, w.config);
            for (name, t) in w.tensors() {
                let b = back.tensor(name);
                assert_eq!(b.shape, t.shape, "{name}");
                assert_eq!(b.data, t.data, "{name}");
            }
            // Float16 storage reads back within float16's rounding.
            let half = weights_from_onnx(&store_weights_as_f16(&bytes).unwrap()).unwrap();
            for (name, t) in w.tensors() {
                for (x, y) in t.data.iter().zip(&half.tensor(name).data) {
                    assert!((x - y).abs() <= 1e-3 * x.abs().max(1e-2), "{name}: {x} {y}");
                }
            }
        }
        assert!(weights_from_onnx(b"not a model").is_err());
    }

    #[test]
    fn model_info_reads_the_name_and_version_without_loading() {
        let w = random_weights(ModelConfig {
            channels: 8,
            layers: 1,
            ..ModelConfig::default()
        });
        let info = ModelInfo {
            name: "test-model".into(),
            version: "7.1".into(),
        };
        let read = model_info(&to_onnx_bytes(&w, &info)).unwrap();
        assert_eq!(
            (read.name.as_str(), read.version.as_str()),
            ("test-model", "7.1")
        );
        assert!(model_info(b"not a model").is_err());
    }
}
