"""Checks exported WaveCRN ONNX files with the ONNX reference tooling.

For each (model.onnx, reference.safetensors) pair: onnx.checker accepts the file, the graph
uses opset >= 17 and carries its configuration in the metadata, and onnxruntime's output (and
its intermediates, where the reference has them) matches the PyTorch reference to 1e-4, or to
1e-2 where the file stores its weights as float16.

Usage: check_onnx.py MODEL.onnx REFERENCE.safetensors [MODEL.onnx REFERENCE.safetensors ...]
"""

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

TOLERANCE = 1e-4
TOLERANCE_F16 = 1e-2


def check(model_path: str, reference_path: str) -> None:
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 17, f"opset {opset} < 17"
    meta = {p.key: p.value for p in model.metadata_props}
    config = json.loads(meta["wavecrn.config"])
    ops = {n.op_type for n in model.graph.node}
    half = any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    tolerance = TOLERANCE_F16 if half else TOLERANCE
    assert "Scan" in ops, "the recurrence must be a standard Scan"

    ref = load_file(reference_path)
    # Expose the intermediates the reference has as extra outputs (they are (B, C, T) already).
    taps = [k for k in ref if k.startswith("act.") and not k.startswith("act.sru")]
    for name in taps:
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(["output", *taps], {"input": ref["input"]})
    worst = 0.0
    for name, got in zip(["output", *taps], outputs):
        want = ref[name]
        assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
        err = float(np.max(np.abs(got - want)))
        worst = max(worst, err)
        assert err <= tolerance, f"{model_path}: {name} differs by {err:.3g}"
    print(
        f"onnxruntime {ort.__version__}: {model_path} passes onnx.checker (opset {opset}, "
        f"{config['layers']} layers, {config['directions']} direction(s)"
        f"{', float16 weights' if half else ''}); output and "
        f"{len(taps)} intermediates within {worst:.2g} of the reference"
    )


def main() -> None:
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit(__doc__)
    for model, reference in zip(args[::2], args[1::2]):
        check(model, reference)


if __name__ == "__main__":
    main()
