"""Replays a `wavecrn-train trace` on the original code: the seed's ConvBSRU on PyTorch +
sru 2.3.5 (`sru_baseline.py`), trained with `torch.optim.Adam` and the paper's L1 loss from
the trace's initial weights on the trace's batches. Prints both loss curves side by side and
how far apart they are: if they part, our trainer has a bug that no gradient check caught.

Needs torch, sru==2.3.5 and safetensors. Usage: replay_training.py TRACE_DIR [--threads N]
"""

import argparse
import json
import os
import sys

import torch
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sru_baseline import load_case  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("trace")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    ours = json.load(open(os.path.join(a.trace, "losses.json")))
    net, _ = load_case(os.path.join(a.trace, "init.safetensors"), "cpu")
    net.train()  # no dropout in the network: train mode changes nothing but sru's path
    with safe_open(os.path.join(a.trace, "batches.safetensors"), framework="pt") as f:
        noisy, clean = f.get_tensor("noisy"), f.get_tensor("clean")
    opt = torch.optim.Adam(net.parameters(), lr=ours["lr"])
    theirs = []
    for step in range(ours["steps"]):
        opt.zero_grad()
        loss = (net(noisy[step]) - clean[step]).abs().mean()
        loss.backward()
        opt.step()
        theirs.append(float(loss.detach()))
    rel = [abs(t - o) / abs(t) for t, o in zip(theirs, ours["loss"])]
    print(f"{'step':>5} {'PyTorch + sru':>14} {'wavecrn-train':>14} {'relative':>10}")
    for step in list(range(10)) + list(range(19, ours["steps"], 20)):
        print(f"{step + 1:>5} {theirs[step]:>14.7f} {ours['loss'][step]:>14.7f} {rel[step]:>10.2e}")
    first = max(rel[:10])
    print(f"largest relative difference: first 10 steps {first:.2e}, all {max(rel):.2e}")
    print(json.dumps({"first10_max_rel": first, "all_max_rel": max(rel),
                      "torch": torch.__version__, "pytorch_loss": theirs}))


if __name__ == "__main__":
    main()
