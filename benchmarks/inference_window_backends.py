"""One sliding-window forward pass of a segmentation preset under each CPU runtime: what a window costs, and what the
network's FLOPs allow.

    python benchmarks/inference_window_backends.py                           # nnunet-v2-3d, 96x128x128, 2 threads
    python benchmarks/inference_window_backends.py --backends eager onnxruntime openvino

Backends: eager PyTorch (what `petct segment` runs), eager with channels-last-3d, torch.compile with inductor's weight
freezing, and the same network exported to ONNX and run by ONNX Runtime or OpenVINO (each only when installed:
`pip install onnxruntime openvino`). Random weights (seeded); each output is compared with eager's. Prints the median
of --repeats timed runs after one warm-up and the achieved GFLOP/s, next to what this CPU reaches on a large fp32
matrix product with the same threads: that product runs near the hardware's peak, so the network's FLOPs divided by
it is the floor no runtime gets under.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

BACKENDS = ("eager", "channels_last", "inductor", "onnxruntime", "openvino")


def build(backend: str, model, x, threads: int, tmp: Path):
    """A callable x -> logits (numpy) for one backend, or None when its library is missing."""
    import importlib.util

    if backend == "eager":
        return lambda: model(x).logits.numpy()
    if backend == "channels_last":
        cl_model, cl_x = model.to(memory_format=torch.channels_last_3d), x.contiguous(memory_format=torch.channels_last_3d)
        return lambda: cl_model(cl_x).logits.contiguous().numpy()
    if backend == "inductor":
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # pre-packs the convolution weights for oneDNN
        compiled = torch.compile(model)
        return lambda: compiled(x).logits.numpy()
    if importlib.util.find_spec(backend) is None:
        return None
    onnx_path = tmp / "model.onnx"
    if not onnx_path.exists():
        torch.onnx.export(Logits(model).eval(), (x,), str(onnx_path), input_names=["x"], output_names=["logits"], dynamo=False,
                          opset_version=17)
    if backend == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        return lambda: session.run(None, {"x": x.numpy()})[0]
    import openvino as ov

    compiled = ov.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_NUM_THREADS": threads})
    return lambda: compiled(x.numpy())[0]


class Logits(torch.nn.Module):
    """The model as a plain module returning its logits tensor (what ONNX export traces)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).logits


def matmul_gflops(n: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of an n x n fp32 matrix product (oneDNN/BLAS run it near the CPU's peak)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="nnunet-v2-3d")
    p.add_argument("--window", type=int, nargs=3, default=(96, 128, 128))
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import numpy as np
    from torch.utils.flop_counter import FlopCounterMode

    from modeling_petct import PetCtConfig, PetCtForSegmentation

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = PetCtForSegmentation(PetCtConfig.from_preset(args.preset)).eval()
    x = torch.randn(1, model.config.num_channels, *args.window)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        reference = model(x).logits.numpy()
    gflop = counter.get_total_flops() / 1e9
    peak = matmul_gflops()
    print(f"# {args.preset}, window {'x'.join(map(str, args.window))}, {gflop:.0f} GFLOP per window, "
          f"{args.threads} threads; fp32 matmul reaches {peak:.0f} GFLOP/s here, so the floor is {gflop / peak:.1f} s")
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for backend in args.backends:
            run = build(backend, model, x, args.threads, Path(tmp))
            if run is None:
                print(f"{backend}: not installed")
                continue
            t0 = time.perf_counter()
            out = run()  # warm-up (and compilation)
            first = time.perf_counter() - t0
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            median = statistics.median(times)
            print(f"{backend}: {median:.2f} s per window ({gflop / median:.0f} GFLOP/s; first call {first:.1f} s), "
                  f"max |logit - eager| {float(np.abs(out - reference).max()):.1e}")


if __name__ == "__main__":
    main()
