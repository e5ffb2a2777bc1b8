//! The fused recurrence as a tract operator, and the graph pass that swaps it in for each
//! ONNX `Scan` the exporter wrote.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::scan::{InputMapping, Scan};

use super::kernel::{Kernel, Recurrence};
use crate::config::ModelConfig;
use crate::onnx_export::scan_node_name;

/// All directions of one SRU layer's recurrence.
///
/// Inputs: the initial states `c.d` (batch, hidden) for each direction; then per direction the
/// time-major sequences u0, u1, u2, skip (steps, batch, hidden); then per direction the
/// weights v_f, v_r, b_f, b_r (hidden). Outputs: the final states per direction, then the
/// hidden sequences per direction. Direction 1 runs backwards in time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SruRecurrence {
    pub directions: usize,
    pub kernel: Kernel,
}

impl std::hash::Hash for Kernel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (*self as u8).hash(state)
    }
}

impl SruRecurrence {
    fn check_arity(&self, inputs: usize) -> TractResult<()> {
        let want = 9 * self.directions;
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
        let d = self.directions;
        self.check_arity(inputs.len())?;
        let shape = inputs[d].shape();
        ensure!(
            shape.len() == 3,
            "SruRecurrence sequences are (steps, batch, hidden)"
        );
        let (steps, batch, hidden) = (shape[0], shape[1], shape[2]);
        let views: Vec<PlainView> = inputs
            .iter()
            .map(|t| t.try_as_plain_ram())
            .collect::<TractResult<_>>()?;
        let slices: Vec<&[f32]> = views
            .iter()
            .map(|v| v.as_slice::<f32>())
            .collect::<TractResult<_>>()?;
        let mut states = TVec::new();
        let mut outputs = TVec::new();
        for dir in 0..d {
            let seq = &slices[d + 4 * dir..d + 4 * dir + 4];
            let w = &slices[5 * d + 4 * dir..5 * d + 4 * dir + 4];
            let r = Recurrence {
                steps,
                batch,
                hidden,
                reverse: dir == 1,
                u0: seq[0],
                u1: seq[1],
                u2: seq[2],
                skip: seq[3],
                v_f: w[0],
                v_r: w[1],
                b_f: w[2],
                b_r: w[3],
            };
            for (name, s) in ["u0", "u1", "u2", "skip"].iter().zip(seq) {
                ensure!(
                    s.len() == steps * batch * hidden,
                    "SruRecurrence: {name} has the wrong shape"
                );
            }
            for (name, s) in ["v_f", "v_r", "b_f", "b_r"].iter().zip(w) {
                ensure!(
                    s.len() == hidden,
                    "SruRecurrence: {name} has the wrong shape"
                );
            }
            ensure!(
                slices[dir].len() == batch * hidden,
                "SruRecurrence: initial state has the wrong shape"
            );
            let mut c = slices[dir].to_vec();
            // SAFETY: every element is written by the kernel before it is read.
            let mut h = unsafe { Tensor::uninitialized::<f32>(&[steps, batch, hidden])? };
            r.run(
                self.kernel,
                &mut c,
                h.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
            );
            states.push(Tensor::from_shape(&[batch, hidden], &c)?.into_tvalue());
            outputs.push(h.into_tvalue());
        }
        states.extend(outputs);
        Ok(states)
    }
}

impl TypedOp for SruRecurrence {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let d = self.directions;
        self.check_arity(inputs.len())?;
        let mut facts: TVec<TypedFact> =
            (0..d).map(|i| f32::fact(inputs[i].shape.clone())).collect();
        facts.extend((0..d).map(|i| f32::fact(inputs[d + 4 * i].shape.clone())));
        Ok(facts)
    }
    as_op!();
}

/// Replaces the Scan of every SRU layer with [`SruRecurrence`] running `kernel`.
///
/// Only Scans that look exactly as the exporter writes them are replaced: named after their
/// layer, with one state per direction, four scanned sequences per direction (the backward
/// ones reversed), and the four per-direction weight vectors read from the outer graph.
/// Anything else is an error, so a foreign or damaged file never runs half-fused.
pub fn fuse_recurrences(
    model: &mut TypedModel,
    config: &ModelConfig,
    kernel: Kernel,
) -> TractResult<()> {
    for layer in 0..config.layers {
        let name = scan_node_name(layer);
        let node = model
            .node_by_name(&name)
            .with_context(|| format!("no recurrence node {name}"))?;
        let scan = node
            .op_as::<Scan>()
            .with_context(|| format!("{name} is not a Scan"))?;
        let d = config.directions;
        ensure!(
            node.inputs.len() == 9 * d,
            "{name}: expected {} inputs, found {}",
            9 * d,
            node.inputs.len()
        );
        for (i, m) in scan.input_mapping.iter().enumerate() {
            let ok = match (i, m) {
                (i, InputMapping::State) => i < d,
                (i, InputMapping::Scan(info)) if i >= d && i < 5 * d => {
                    let backward = (i - d) / 4 == 1;
                    info.axis == 0 && info.chunk == if backward { -1 } else { 1 }
                }
                (i, InputMapping::Full) => i >= 5 * d,
                _ => false,
            };
            ensure!(
                ok,
                "{name}: input {i} is {m:?}, not what the exporter writes"
            );
        }
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

        // Where each of the fused op's outputs goes among the Scan's output slots.
        let mut targets = vec![None; 2 * d];
        for (body_out, m) in scan.output_mapping.iter().enumerate() {
            if let Some(slot) = m.last_value_slot {
                ensure!(
                    body_out < d,
                    "{name}: final state from body output {body_out}"
                );
                targets[body_out] = Some(slot);
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
                targets[d + dir] = Some(slot);
            }
        }

        let inputs: Vec<OutletId> = node.inputs[..5 * d]
            .iter()
            .copied()
            .chain(weights)
            .collect();
        let node_id = node.id;
        let mut patch = TypedModelPatch::new(format!("fuse {name}"));
        let taps = patch.taps(model, &inputs)?;
        let fused = patch.wire_node(
            format!("{name}.fused"),
            SruRecurrence {
                directions: d,
                kernel,
            },
            &taps,
        )?;
        for (i, slot) in targets.iter().enumerate() {
            if let Some(slot) = slot {
                patch.shunt_outside(model, OutletId::new(node_id, *slot), fused[i])?;
            }
        }
        patch.obliterate(node_id)?;
        patch.apply(model)?;
    }
    Ok(())
}
