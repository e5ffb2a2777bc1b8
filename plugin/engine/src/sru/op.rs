//! The fused recurrence as a tract operator, and the graph pass that swaps it in for each
//! ONNX `Scan` the exporter wrote.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::{Slice, TypedConcat};
use tract_onnx::tract_core::ops::scan::{InputMapping, Scan};

use super::kernel::{Kernel, Layout, Recurrence, Seq};
use crate::config::ModelConfig;
use crate::model_file::scan_node_name;

/// All directions of one SRU layer's recurrence, reading its gates straight from the layer's
/// U matrix.
///
/// Inputs: U, time-major `(steps, batch, directions * k * hidden)` with columns in
/// [direction][k][unit] order; when `k == 3` the skip input `(steps, batch, directions *
/// hidden)` (with `k == 4` the skip is U's fourth slice); the initial state `(batch, hidden)`
/// of each direction; then per direction the weights v_f, v_r, b_f, b_r `(hidden)`.
/// Outputs: the layer output `(steps, batch, directions * hidden)` (the directions side by
/// side), then each direction's final state. Direction 1 runs backwards in time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SruRecurrence {
    pub directions: usize,
    pub k: usize,
    pub hidden: usize,
    pub kernel: Kernel,
}

impl SruRecurrence {
    fn inputs(&self) -> usize {
        1 + usize::from(self.k == 3) + 5 * self.directions
    }

    fn check_arity(&self, inputs: usize) -> TractResult<()> {
        let want = self.inputs();
        ensure!(
            inputs == want,
            "SruRecurrence takes {want} inputs, got {inputs}"
        );
        Ok(())
    }
}

impl Op for SruRecurrence {
    fn name(&self) -> StaticName {
        "SruRecurrence".into()
    }
    op_as_typed_op!();
}

impl EvalOp for SruRecurrence {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.check_arity(inputs.len())?;
        let (d, k, n) = (self.directions, self.k, self.hidden);
        let shape = inputs[0].shape();
        ensure!(
            shape.len() == 3 && shape[2] == d * k * n,
            "SruRecurrence: U has shape {shape:?}"
        );
        let (steps, batch) = (shape[0], shape[1]);
        let views: Vec<PlainView> = inputs
            .iter()
            .map(|t| t.try_as_plain_ram())
            .collect::<TractResult<_>>()?;
        let slices: Vec<&[f32]> = views
            .iter()
            .map(|v| v.as_slice::<f32>())
            .collect::<TractResult<_>>()?;
        let u = slices[0];
        ensure!(
            u.len() == steps * batch * d * k * n,
            "SruRecurrence: U size"
        );
        let skip = (k == 3).then(|| slices[1]);
        if let Some(x) = skip {
            ensure!(
                x.len() == steps * batch * d * n,
                "SruRecurrence: skip input size"
            );
        }
        let rest = &slices[1 + usize::from(k == 3)..];
        let (states, weights) = rest.split_at(d);
        ensure!(
            states.iter().all(|c| c.len() == batch * n),
            "SruRecurrence: state size"
        );
        ensure!(
            weights.iter().all(|w| w.len() == n),
            "SruRecurrence: weight size"
        );

        let u_at = |dir: usize, slot: usize| Seq {
            data: u,
            layout: Layout {
                offset: (dir * k + slot) * n,
                t_stride: batch * d * k * n,
                b_stride: d * k * n,
            },
        };
        let joined = |dir: usize| Layout {
            offset: dir * n,
            t_stride: batch * d * n,
            b_stride: d * n,
        };
        // SAFETY: the directions together write every element before it is read.
        let mut h = unsafe { Tensor::uninitialized::<f32>(&[steps, batch, d * n])? };
        let mut finals = TVec::new();
        {
            let mut out = h.try_as_plain_ram_mut()?;
            let out = out.as_slice_mut::<f32>()?;
            for dir in 0..d {
                let w = &weights[4 * dir..4 * dir + 4];
                let r = Recurrence {
                    steps,
                    batch,
                    hidden: n,
                    reverse: dir == 1,
                    u0: u_at(dir, 0),
                    u1: u_at(dir, 1),
                    u2: u_at(dir, 2),
                    skip: match skip {
                        Some(x) => Seq {
                            data: x,
                            layout: joined(dir),
                        },
                        None => u_at(dir, 3),
                    },
                    v_f: w[0],
                    v_r: w[1],
                    b_f: w[2],
                    b_r: w[3],
                };
                let mut c = states[dir].to_vec();
                r.run(self.kernel, &mut c, out, joined(dir));
                finals.push(Tensor::from_shape(&[batch, n], &c)?.into_tvalue());
            }
        }
        let mut outputs = tvec![h.into_tvalue()];
        outputs.extend(finals);
        Ok(outputs)
    }
}

impl TypedOp for SruRecurrence {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.check_arity(inputs.len())?;
        let u = &inputs[0].shape;
        ensure!(
            u.rank() == 3,
            "SruRecurrence: U must be (steps, batch, features)"
        );
        let h = f32::fact([
            u[0].clone(),
            u[1].clone(),
            (self.directions * self.hidden).to_dim(),
        ]);
        let first_state = 1 + usize::from(self.k == 3);
        let mut facts = tvec![h];
        facts
            .extend((0..self.directions).map(|i| f32::fact(inputs[first_state + i].shape.clone())));
        Ok(facts)
    }
    as_op!();
}

/// Replaces the Scan of every SRU layer (and the Split feeding it, and the Concat after it)
/// with [`SruRecurrence`] running `kernel`.
///
/// Only Scans that look exactly as the exporter writes them are replaced: named after their
/// layer, with one state per direction, their gate sequences sliced from one U tensor in
/// [direction][k][unit] order, the backward ones reversed, and the four per-direction
/// weight vectors read from the outer graph. Anything else is an error, so a foreign or
/// damaged file never runs half-fused.
pub fn fuse_recurrences(
    model: &mut TypedModel,
    config: &ModelConfig,
    kernel: Kernel,
) -> TractResult<()> {
    for layer in 0..config.layers {
        let shape = config.layer(layer);
        let (d, k, n) = (shape.directions, shape.k, shape.hidden);
        let name = scan_node_name(layer);
        let node = model
            .node_by_name(&name)
            .with_context(|| format!("no recurrence node {name}"))?;
        let scan = node
            .op_as::<Scan>()
            .with_context(|| format!("{name} is not a Scan"))?;
        ensure!(
            node.inputs.len() == 9 * d,
            "{name}: expected {} inputs, found {}",
            9 * d,
            node.inputs.len()
        );
        for (i, m) in scan.input_mapping.iter().enumerate() {
            let ok = match m {
                InputMapping::State => i < d,
                InputMapping::Scan(info) if (d..5 * d).contains(&i) => {
                    let backward = (i - d) / 4 == 1;
                    info.axis == 0 && info.chunk == if backward { -1 } else { 1 }
                }
                InputMapping::Full => i >= 5 * d,
                _ => false,
            };
            ensure!(
                ok,
                "{name}: input {i} is {m:?}, not what the exporter writes"
            );
        }

        // The gate sequences must be slices of one U (and of one skip tensor when k == 3).
        let sliced_from = |outlet: OutletId, start: usize| -> TractResult<OutletId> {
            let p = model.node(outlet.node);
            let s = p
                .op_as::<Slice>()
                .with_context(|| format!("{name}: {} is not a slice", p.name))?;
            ensure!(
                s.axis == 2 && s.start == start.to_dim() && s.end == (start + n).to_dim(),
                "{name}: {} slices {:?}",
                p.name,
                s
            );
            Ok(p.inputs[0])
        };
        let mut u = None;
        let mut x = None;
        for dir in 0..d {
            for slot in 0..4 {
                let outlet = node.inputs[d + 4 * dir + slot];
                let (source, start, into) = if slot < 3 || k == 4 {
                    (Some(outlet), (dir * k + slot) * n, &mut u)
                } else if d == 1 {
                    (None, 0, &mut x)
                } else {
                    (Some(outlet), dir * n, &mut x)
                };
                let base = match source {
                    Some(o) => sliced_from(o, start)?,
                    None => outlet,
                };
                ensure!(
                    into.is_none_or(|b| b == base),
                    "{name}: gate inputs come from different tensors"
                );
                *into = Some(base);
            }
        }
        let u = u.context("no U")?;

        // The closure inputs arrive in whatever order the body first used them: put them in
        // the kernel's order by the outer names the body refers to.
        let mut weights = vec![None; 4 * d];
        for (i, outlet) in scan.body.input_outlets()?.iter().enumerate().skip(5 * d) {
            let body_name = &scan.body.node(outlet.node).name;
            let slot = (0..d)
                .flat_map(|dir| ["v_f", "v_r", "b_f", "b_r"].map(move |w| (dir, w)))
                .position(|(dir, w)| *body_name == format!("sru.rnn_lst.{layer}.{w}.d{dir}"))
                .with_context(|| format!("{name}: unexpected outer input {body_name}"))?;
            weights[slot] = Some(node.inputs[i]);
        }
        let weights: Vec<OutletId> = weights
            .into_iter()
            .collect::<Option<_>>()
            .with_context(|| format!("{name}: a weight input is missing"))?;

        // Which Scan output slots hold each direction's final state and hidden sequence.
        let mut finals = vec![None; d];
        let mut hs = vec![None; d];
        for (body_out, m) in scan.output_mapping.iter().enumerate() {
            if let Some(slot) = m.last_value_slot {
                ensure!(
                    body_out < d,
                    "{name}: final state from body output {body_out}"
                );
                finals[body_out] = Some(slot);
            }
            if let Some((slot, info)) = m.scan {
                let dir = body_out
                    .checked_sub(d)
                    .filter(|&x| x < d)
                    .with_context(|| format!("{name}: scan output {body_out}"))?;
                ensure!(
                    info.axis == 0 && info.chunk == if dir == 1 { -1 } else { 1 },
                    "{name}: scan output {body_out} is {info:?}"
                );
                hs[dir] = Some(slot);
            }
        }
        let hs: Vec<OutletId> = hs
            .into_iter()
            .map(|s| s.map(|slot| OutletId::new(node.id, slot)))
            .collect::<Option<_>>()
            .with_context(|| format!("{name}: a direction's output is missing"))?;
        // The layer output: the Scan's own for one direction, else the Concat joining them.
        let layer_output = if d == 1 {
            hs[0]
        } else {
            let successors = &model.outlet_successors(hs[0]);
            let join = successors
                .iter()
                .map(|inlet| model.node(inlet.node))
                .find(|s| s.op_as::<TypedConcat>().is_some_and(|c| c.axis == 2) && s.inputs == hs)
                .with_context(|| format!("{name}: the directions are not joined by one Concat"))?;
            OutletId::new(join.id, 0)
        };

        let mut inputs = vec![u];
        inputs.extend(x);
        inputs.extend(&node.inputs[..d]);
        inputs.extend(weights);
        let node_id = node.id;
        let mut patch = TypedModelPatch::new(format!("fuse {name}"));
        let taps = patch.taps(model, &inputs)?;
        let op = SruRecurrence {
            directions: d,
            k,
            hidden: n,
            kernel,
        };
        let fused = patch.wire_node(format!("{name}.fused"), op, &taps)?;
        patch.shunt_outside(model, layer_output, fused[0])?;
        for (dir, slot) in finals.iter().enumerate() {
            if let Some(slot) = slot {
                patch.shunt_outside(model, OutletId::new(node_id, *slot), fused[1 + dir])?;
            }
        }
        patch.obliterate(node_id)?;
        patch.apply(model)?;
    }
    Ok(())
}
