//! Writes a WaveCRN network as a standard ONNX graph (opset 17).
//!
//! Only standard operators appear, so any ONNX runtime can check the file: Conv,
//! LayerNormalization, MatMul, Mul, Add, Sub, Sigmoid, ConvTranspose, Tanh, a few shape ops, and
//! each SRU layer's recurrence as one `Scan` whose body does one time step of every direction
//! (the backward direction scans in reverse). The engine later swaps each Scan for its fused
//! kernel; [`crate::recurrence::graph`] relies on the names and input order written here.
//!
//! Layout inside the graph: the SRU stack runs time-major, (T, B, features). Each layer's U
//! matrix has its columns reordered from the reference's [direction][unit][k] to
//! [direction][k][unit], so one `Split` on the last axis hands the Scan contiguous per-gate
//! slices.

use prost::Message;
use tract_onnx::pb::{
    self, attribute_proto::AttributeType, tensor_proto::DataType,
    tensor_shape_proto::dimension::Value as Dim, type_proto,
};

use crate::config::MaskKind;
use crate::weights::Weights;

use super::{
    scan_node_name, ModelInfo, HALF_SUFFIX, INPUT, META_CONFIG, META_NAME, META_VERSION, OUTPUT,
};

/// The ONNX opset the graph is written for.
pub const OPSET: i64 = 17;

/// Builds the ONNX model for `weights`.
pub fn to_onnx(weights: &Weights, info: &ModelInfo) -> pb::ModelProto {
    let cfg = &weights.config;
    let mut g = GraphBuilder::default();
    g.inputs.push(value_info(INPUT, &["batch", "1", "samples"]));
    g.outputs
        .push(value_info(OUTPUT, &["batch", "1", "samples"]));

    let kernel = cfg.kernel as i64;
    let stride = cfg.stride as i64;
    let conv_attrs = || {
        vec![
            ints("kernel_shape", &[kernel]),
            ints("strides", &[stride]),
            ints("pads", &[stride, stride]),
        ]
    };
    g.weight(weights, "conv.weight");
    g.node(
        "Conv",
        "encoder",
        &[INPUT, "conv.weight"],
        &["act.conv"],
        conv_attrs(),
    );
    g.node(
        "Transpose",
        "encoder.time_major",
        &["act.conv"],
        &["sru.input"],
        vec![ints("perm", &[2, 0, 1])],
    );

    // Zero initial state, (batch, hidden): batch is only known at run time.
    let hidden = cfg.hidden();
    g.int_const("shape.batch_index", &[1], &[1]);
    g.int_const("shape.hidden", &[1], &[hidden as i64]);
    g.node(
        "Shape",
        "state.shape.of_input",
        &["sru.input"],
        &["state.input_shape"],
        vec![],
    );
    g.node(
        "Gather",
        "state.shape.batch",
        &["state.input_shape", "shape.batch_index"],
        &["state.batch"],
        vec![int("axis", 0)],
    );
    g.node(
        "Concat",
        "state.shape",
        &["state.batch", "shape.hidden"],
        &["state.shape"],
        vec![int("axis", 0)],
    );
    let zero = pb::TensorProto {
        dims: vec![1],
        data_type: DataType::Float as i32,
        float_data: vec![0.0],
        ..Default::default()
    };
    g.node(
        "ConstantOfShape",
        "state.zero",
        &["state.shape"],
        &["state.zero"],
        vec![tensor_attr("value", zero)],
    );

    let mut x = "sru.input".to_string();
    for i in 0..cfg.layers {
        x = g.sru_layer(weights, i, &x);
    }

    let (c, dh) = (cfg.channels, cfg.directions * hidden);
    let outfc = &weights.tensor("outfc.weight").data;
    let outfc_t: Vec<f32> = (0..dh)
        .flat_map(|j| (0..c).map(move |o| outfc[o * dh + j]))
        .collect();
    g.float_init("outfc.weight.transposed", &[dh, c], outfc_t);
    g.node(
        "MatMul",
        "mask",
        &[&x, "outfc.weight.transposed"],
        &["mask.time_major"],
        vec![],
    );
    let mask_tm = match cfg.mask {
        MaskKind::Linear => "mask.time_major",
        MaskKind::Tanh => {
            g.node(
                "Tanh",
                "mask.restrict",
                &["mask.time_major"],
                &["mask.restricted"],
                vec![],
            );
            "mask.restricted"
        }
    };
    g.node(
        "Transpose",
        "mask.channels_major",
        &[mask_tm],
        &["act.mask"],
        vec![ints("perm", &[1, 2, 0])],
    );
    g.node(
        "Mul",
        "apply_mask",
        &["act.mask", "act.conv"],
        &["act.masked"],
        vec![],
    );
    g.weight(weights, "deconv.weight");
    g.node(
        "ConvTranspose",
        "decoder",
        &["act.masked", "deconv.weight"],
        &["act.deconv"],
        {
            let mut a = conv_attrs();
            a.push(ints("output_padding", &[0]));
            a
        },
    );
    g.node("Tanh", "output.squash", &["act.deconv"], &[OUTPUT], vec![]);

    let meta = |k: &str, v: String| pb::StringStringEntryProto {
        key: k.into(),
        value: v,
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "wavecrn".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "WaveCRN speech enhancement, {} parameters. Input and output: float32 (batch, 1, \
             samples) at {} Hz, samples a multiple of {}.",
            cfg.parameter_count(),
            cfg.sample_rate,
            cfg.stride
        ),
        graph: Some(g.finish("wavecrn")),
        metadata_props: vec![
            meta(META_CONFIG, cfg.to_json()),
            meta(META_NAME, info.name.clone()),
            meta(META_VERSION, info.version.clone()),
        ],
        ..Default::default()
    }
}

/// Serialises `to_onnx` to bytes.
pub fn to_onnx_bytes(weights: &Weights, info: &ModelInfo) -> Vec<u8> {
    to_onnx(weights, info).encode_to_vec()
}

/// Rewrites an ONNX model (bytes) to store its float32 weights as float16, half the size:
/// each top-level float initializer `W` becomes a float16 initializer `W:f16` and a `Cast`
/// node at the head of the graph gives `W` back as float32, so the rest of the graph, and
/// what it computes, stay float32. A runtime folds the casts away when it loads the file.
pub fn store_weights_as_f16(bytes: &[u8]) -> crate::error::Result<Vec<u8>> {
    let mut model = super::decode(bytes)?;
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| crate::error::Error::Model("no graph".into()))?;
    let mut casts = Vec::new();
    for t in &mut graph.initializer {
        if t.data_type != DataType::Float as i32 {
            continue;
        }
        let values = float_values(t);
        let name = std::mem::take(&mut t.name);
        t.name = format!("{name}{HALF_SUFFIX}");
        t.data_type = DataType::Float16 as i32;
        t.float_data.clear();
        t.raw_data = values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        casts.push(pb::NodeProto {
            input: vec![t.name.clone()],
            output: vec![name.clone()],
            name: format!("{name}.cast"),
            op_type: "Cast".into(),
            attribute: vec![int("to", DataType::Float as i64)],
            ..Default::default()
        });
    }
    casts.append(&mut graph.node);
    graph.node = casts;
    Ok(model.encode_to_vec())
}

/// The values of a float32 or float16 initializer as float32 (raw or typed storage).
pub fn float_values(t: &pb::TensorProto) -> Vec<f32> {
    if t.data_type == DataType::Float16 as i32 {
        return t
            .raw_data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
    }
    if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
}

impl GraphBuilder {
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<pb::AttributeProto>,
    ) {
        self.nodes.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: name.into(),
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
    }

    fn float_init(&mut self, name: &str, shape: &[usize], data: Vec<f32>) {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        self.initializers.push(pb::TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            name: name.into(),
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
    }

    fn int_const(&mut self, name: &str, shape: &[usize], data: &[i64]) {
        self.initializers.push(pb::TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Int64 as i32,
            name: name.into(),
            int64_data: data.to_vec(),
            ..Default::default()
        });
    }

    /// Adds a parameter unchanged, under its reference name.
    fn weight(&mut self, weights: &Weights, name: &str) {
        let t = weights.tensor(name);
        self.float_init(name, &t.shape, t.data.clone());
    }

    /// One SRU layer on the time-major tensor `x`; returns the name of its output.
    fn sru_layer(&mut self, weights: &Weights, i: usize, x: &str) -> String {
        let l = weights.config.layer(i);
        let (h, dirs, k) = (l.hidden, l.directions, l.k);
        let p = |s: &str| format!("sru.rnn_lst.{i}.{s}");
        let n = |s: &str| format!("sru.{i}.{s}");

        self.weight(weights, &p("layer_norm.weight"));
        self.weight(weights, &p("layer_norm.bias"));
        self.node(
            "LayerNormalization",
            &n("layer_norm"),
            &[x, &p("layer_norm.weight"), &p("layer_norm.bias")],
            &[&n("normed")],
            vec![int("axis", -1), float("epsilon", 1e-5)],
        );

        // Reorder U's columns from [d][unit][k] to [d][k][unit].
        let w = &weights.tensor(&p("weight")).data;
        let cols = dirs * h * k;
        let mut reordered = vec![0.0; w.len()];
        for row in 0..l.input {
            for d in 0..dirs {
                for j in 0..h {
                    for kk in 0..k {
                        reordered[row * cols + (d * k + kk) * h + j] =
                            w[row * cols + (d * h + j) * k + kk];
                    }
                }
            }
        }
        self.float_init(&p("weight.gate_major"), &[l.input, cols], reordered);
        self.node(
            "MatMul",
            &n("project"),
            &[&n("normed"), &p("weight.gate_major")],
            &[&n("u")],
            vec![],
        );

        let u_name = |d: usize, kk: usize| n(&format!("u.d{d}.k{kk}"));
        let split_name = format!("split.{}x{h}", dirs * k);
        if !self.initializers.iter().any(|t| t.name == split_name) {
            self.int_const(&split_name, &[dirs * k], &vec![h as i64; dirs * k]);
        }
        let u_parts: Vec<String> = (0..dirs)
            .flat_map(|d| (0..k).map(move |kk| (d, kk)))
            .map(|(d, kk)| u_name(d, kk))
            .collect();
        self.node(
            "Split",
            &n("split_gates"),
            &[&n("u"), &split_name],
            &refs(&u_parts),
            vec![int("axis", 2)],
        );

        let skip = |d: usize| match (k, dirs) {
            (3, 1) => n("skip"),
            (3, _) => n(&format!("skip.d{d}")),
            _ => u_name(d, 3),
        };
        if k == 3 {
            self.weight(weights, &p("scale_x"));
            self.node(
                "Mul",
                &n("rescale"),
                &[x, &p("scale_x")],
                &[&n("skip")],
                vec![],
            );
            if dirs > 1 {
                let split_dirs = format!("split.{dirs}x{h}");
                if !self.initializers.iter().any(|t| t.name == split_dirs) {
                    self.int_const(&split_dirs, &[dirs], &vec![h as i64; dirs]);
                }
                let parts: Vec<String> = (0..dirs).map(skip).collect();
                self.node(
                    "Split",
                    &n("split_skip"),
                    &[&n("skip"), &split_dirs],
                    &refs(&parts),
                    vec![int("axis", 2)],
                );
            }
        }

        // Element-wise recurrent weights and biases: [gate][direction][unit] in the reference.
        let wc = &weights.tensor(&p("weight_c")).data;
        let bias = &weights.tensor(&p("bias")).data;
        for d in 0..dirs {
            for (gate, g) in ["f", "r"].iter().enumerate() {
                let at = (gate * dirs + d) * h;
                self.float_init(&p(&format!("v_{g}.d{d}")), &[h], wc[at..at + h].to_vec());
                self.float_init(&p(&format!("b_{g}.d{d}")), &[h], bias[at..at + h].to_vec());
            }
        }

        let body = step_body(i, h, dirs);
        let mut inputs = vec!["state.zero".to_string(); dirs];
        for d in 0..dirs {
            inputs.extend([u_name(d, 0), u_name(d, 1), u_name(d, 2), skip(d)]);
        }
        let layer_out = n("output");
        let h_out: Vec<String> = if dirs == 1 {
            vec![layer_out.clone()]
        } else {
            (0..dirs).map(|d| n(&format!("h.d{d}"))).collect()
        };
        let mut outputs: Vec<String> = (0..dirs).map(|d| n(&format!("c_last.d{d}"))).collect();
        outputs.extend(h_out.iter().cloned());
        let directions: Vec<i64> = (0..dirs).flat_map(|d| [d as i64; 4]).collect();
        let out_dirs: Vec<i64> = (0..dirs as i64).collect();
        self.node(
            "Scan",
            &scan_node_name(i),
            &refs(&inputs),
            &refs(&outputs),
            vec![
                graph_attr("body", body),
                int("num_scan_inputs", 4 * dirs as i64),
                ints("scan_input_directions", &directions),
                ints("scan_output_directions", &out_dirs),
            ],
        );
        if dirs > 1 {
            self.node(
                "Concat",
                &n("join_directions"),
                &refs(&h_out),
                &[&layer_out],
                vec![int("axis", 2)],
            );
        }
        layer_out
    }

    fn finish(self, name: &str) -> pb::GraphProto {
        pb::GraphProto {
            node: self.nodes,
            name: name.into(),
            initializer: self.initializers,
            input: self.inputs,
            output: self.outputs,
            ..Default::default()
        }
    }
}

/// One time step of every direction of SRU layer `i`: states c.d*, then per direction the scan
/// slices u0, u1, u2 and the skip s; outputs the new states then the hidden outputs. The
/// recurrent weights and biases are read from the outer graph by name.
fn step_body(i: usize, h: usize, dirs: usize) -> pb::GraphProto {
    let mut g = GraphBuilder::default();
    let n = |s: &str| format!("sru.{i}.step.{s}");
    let w = |s: &str| format!("sru.rnn_lst.{i}.{s}");
    let shape = ["batch", &h.to_string()].map(String::from);
    let shape: Vec<&str> = shape.iter().map(String::as_str).collect();
    for d in 0..dirs {
        g.inputs.push(value_info(&n(&format!("c.d{d}")), &shape));
    }
    for d in 0..dirs {
        for s in ["u0", "u1", "u2", "s"] {
            g.inputs.push(value_info(&n(&format!("{s}.d{d}")), &shape));
        }
    }
    let mut hs = vec![];
    for d in 0..dirs {
        let v = |s: &str| n(&format!("{s}.d{d}"));
        let c = v("c");
        for gate in ["f", "r"] {
            let pre = if gate == "f" { v("u1") } else { v("u2") };
            let wd = |s: &str| w(&format!("{s}.d{d}"));
            g.node(
                "Mul",
                &v(&format!("{gate}.vc")),
                &[&wd(&format!("v_{gate}")), &c],
                &[&v(&format!("{gate}.vc"))],
                vec![],
            );
            g.node(
                "Add",
                &v(&format!("{gate}.ub")),
                &[&pre, &wd(&format!("b_{gate}"))],
                &[&v(&format!("{gate}.ub"))],
                vec![],
            );
            g.node(
                "Add",
                &v(&format!("{gate}.pre")),
                &[&v(&format!("{gate}.ub")), &v(&format!("{gate}.vc"))],
                &[&v(&format!("{gate}.pre"))],
                vec![],
            );
            g.node(
                "Sigmoid",
                &v(gate),
                &[&v(&format!("{gate}.pre"))],
                &[&v(gate)],
                vec![],
            );
        }
        // c' = u0 + (c - u0) * f ; h = s + (c' - s) * r
        g.node(
            "Sub",
            &v("c_minus_u0"),
            &[&c, &v("u0")],
            &[&v("c_minus_u0")],
            vec![],
        );
        g.node(
            "Mul",
            &v("c_forget"),
            &[&v("c_minus_u0"), &v("f")],
            &[&v("c_forget")],
            vec![],
        );
        g.node(
            "Add",
            &v("c_next"),
            &[&v("u0"), &v("c_forget")],
            &[&v("c_next")],
            vec![],
        );
        g.node(
            "Sub",
            &v("c_minus_s"),
            &[&v("c_next"), &v("s")],
            &[&v("c_minus_s")],
            vec![],
        );
        g.node(
            "Mul",
            &v("c_reset"),
            &[&v("c_minus_s"), &v("r")],
            &[&v("c_reset")],
            vec![],
        );
        g.node(
            "Add",
            &v("h"),
            &[&v("s"), &v("c_reset")],
            &[&v("h")],
            vec![],
        );
        g.outputs.push(value_info(&v("c_next"), &shape));
        hs.push(value_info(&v("h"), &shape));
    }
    g.outputs.extend(hs);
    g.finish(&format!("sru.{i}.step"))
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A float32 value with the given dims: numbers are fixed sizes, anything else a named symbol.
fn value_info(name: &str, dims: &[&str]) -> pb::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| pb::tensor_shape_proto::Dimension {
            value: Some(match d.parse::<i64>() {
                Ok(v) => Dim::DimValue(v),
                Err(_) => Dim::DimParam(d.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attr(name: &str, ty: AttributeType) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: ty as i32,
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        i: v,
        ..attr(name, AttributeType::Int)
    }
}

fn float(name: &str, v: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        f: v,
        ..attr(name, AttributeType::Float)
    }
}

fn ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        ints: v.to_vec(),
        ..attr(name, AttributeType::Ints)
    }
}

fn tensor_attr(name: &str, t: pb::TensorProto) -> pb::AttributeProto {
    pb::AttributeProto {
        t: Some(t),
        ..attr(name, AttributeType::Tensor)
    }
}

fn graph_attr(name: &str, g: pb::GraphProto) -> pb::AttributeProto {
    pb::AttributeProto {
        g: Some(g),
        ..attr(name, AttributeType::Graph)
    }
}
