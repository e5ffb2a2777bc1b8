"""The original WaveCRN (PyTorch + the `sru` 2.3.5 package) as the speed baseline for the GPU.

The network is the seed code's `ConvBSRU` as `../shared/reference/README.md` pins it down:
Conv1d(1 -> C, 96, stride 48, padding 48), an `sru.SRU` stack with layer norm on each layer's
input, Linear(D*C -> C) without bias as the mask, ConvTranspose1d(C -> 1, 96, stride 48,
padding 48), tanh. The reference files' tensor names are this module's parameter names.

1. `--check REF.safetensors ...`: loads each reference case and checks this network gives its
   `output` to 1e-4 on `--device` (so the baseline is the same arithmetic as the Rust engine).
2. The speed figure: the paper configuration (256 channels, 6 bidirectional layers) on a batch
   of `--batch` random signals of `--seconds` each, median of `--runs` timed forward passes
   after one warm-up, printed as `baseline-rtf: <seconds per audio second>`.

Needs torch and sru (`pip install sru==2.3.5`); on CUDA, sru compiles its kernel at first use.
Usage: sru_baseline.py [--device cpu|cuda] [--batch 64] [--seconds 10] [--runs 3]
                       [--check REF.safetensors ...]
"""

import argparse
import json
import statistics
import time

import torch
from safetensors import safe_open
from sru import SRU

RATE = 16_000
FRAME, HOP = 96, 48
TOLERANCE = 1e-4


class ConvBSRU(torch.nn.Module):
    def __init__(self, channels: int, layers: int, bidirectional: bool):
        super().__init__()
        directions = 2 if bidirectional else 1
        self.conv = torch.nn.Conv1d(1, channels, FRAME, stride=HOP, padding=HOP, bias=False)
        self.sru = SRU(
            channels,
            channels,
            num_layers=layers,
            bidirectional=bidirectional,
            layer_norm=True,
            rescale=False,
        )
        self.outfc = torch.nn.Linear(directions * channels, channels, bias=False)
        self.deconv = torch.nn.ConvTranspose1d(
            channels, 1, FRAME, stride=HOP, padding=HOP, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x)  # (B, C, T)
        hidden, _ = self.sru(features.permute(2, 0, 1))  # (T, B, D*C)
        mask = self.outfc(hidden).permute(1, 2, 0)  # (B, C, T)
        return torch.tanh(self.deconv(mask * features))


def load_case(path: str, device: str):
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    net = ConvBSRU(
        int(meta["conv_channels"]), int(meta["num_layers"]), meta["bidirectional"] == "true"
    )
    state = {k: v for k, v in tensors.items() if k in net.state_dict()}
    missing = set(net.state_dict()) - set(state)
    assert not missing, f"{path}: no tensors for {sorted(missing)}"
    net.load_state_dict(state)
    return net.to(device).eval(), tensors


def check(paths, device: str) -> None:
    for path in paths:
        net, t = load_case(path, device)
        with torch.no_grad():
            got = net(t["input"].to(device)).cpu()
        err = float((got - t["output"]).abs().max())
        status = "ok" if err <= TOLERANCE else "FAILED"
        print(f"{path}: PyTorch + sru on {device} vs reference {err:.2e}: {status}")
        assert err <= TOLERANCE, f"{path} differs by {err:.3g}"


def require_cpu_kernel() -> None:
    """Stops unless sru's compiled CPU kernel loads: without it (no ninja or C++ compiler),
    sru silently runs its recurrence as a slow Python loop, and a speed ratio against that
    says nothing about the original at its best."""
    import importlib

    loader = None
    for module in ("sru.sru_functional", "sru.ops"):
        try:
            loader = getattr(importlib.import_module(module), "_lazy_load_cpu_kernel", None)
        except ImportError:
            continue
        if loader is not None:
            break
    if loader is None:
        raise SystemExit("cannot find sru's CPU kernel loader: is this sru 2.3.5?")
    if not loader():
        raise SystemExit(
            "sru's C++ CPU kernel did not load (it needs ninja and a C++ compiler: "
            "`pip install ninja`, `apt-get install g++`); the original would run on its "
            "slow Python fallback, so no baseline is measured"
        )


def speed(device: str, batch: int, seconds: float, runs: int) -> float:
    if device == "cpu":
        require_cpu_kernel()
    torch.manual_seed(1)
    net = ConvBSRU(256, 6, True).to(device).eval()
    length = int(seconds * RATE) // HOP * HOP
    x = 0.1 * torch.randn(batch, 1, length, device=device)

    def once() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            net(x)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    once()  # warm-up: sru compiles its kernel, memory is allocated
    took = statistics.median(once() for _ in range(max(runs, 1)))
    audio = batch * length / RATE
    print(
        f"PyTorch {torch.__version__} + sru, paper configuration, batch {batch} x {seconds} s "
        f"on {device}: {took:.3f} s, real-time factor {took / audio:.5f}, "
        f"{audio / took:.0f}x real time"
    )
    print(f"baseline-rtf: {took / audio:.6f}")
    return took / audio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--check", nargs="*", default=[])
    a = p.parse_args()
    check(a.check, a.device)
    speed(a.device, a.batch, a.seconds, a.runs)
    print(json.dumps({"device": a.device, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
