"""Fine-tune a segmentation preset on phantom studies, so inference recipes and runtimes can be compared on a network
whose output means something (random weights make every recipe comparison noise).

    python benchmarks/inference_finetune.py --out runs/tiny-seg --steps 300                       # tiny-unet, seconds
    nice -n 19 python benchmarks/inference_finetune.py --out runs/nnunet-phantom --preset nnunet-v2-3d \
        --size autopet --studies 6 --crop 32 64 64 --batch 2 --minutes 90                        # the confident model
    python benchmarks/inference_segment.py --size autopet --model runs/nnunet-phantom

Not the package's training recipe (see train_seg.py): in-memory harmonised phantoms (seeds 100+, never the benchmark
seeds 1-9), lesion-centred random crops (p 0.67), DiceCE, AdamW with nnU-Net's poly decay over the step or time
budget. The network is fully convolutional, so it trains on crops smaller than its inference window (``--crop``) and is
saved with the preset's window (``config.crop_size``) for inference. A checkpoint is saved every ``--save-every``
minutes, so a run cut short still leaves weights. Prints one summary line.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def crops(studies, crop, rng, fg_prob=0.67):
    """One random crop (2, *crop) and its label, centred on a lesion voxel with probability fg_prob."""
    study = studies[rng.integers(len(studies))]
    shape = np.array(study.shape)
    size = np.minimum(crop, shape)
    lesion = np.argwhere(study.label > 0) if rng.random() < fg_prob else np.empty((0, 3))
    centre = lesion[rng.integers(len(lesion))] if len(lesion) else rng.integers(0, shape)
    start = np.clip(centre - size // 2, 0, shape - size)
    box = tuple(slice(a, a + s) for a, s in zip(start, size))
    image, label = study.image[(slice(None), *box)], study.label[box]
    pad = [(0, c - s) for c, s in zip(crop, size)]
    return np.pad(image, [(0, 0), *pad]), np.pad(label, pad)


def phantom_studies(n: int, size: str, config):
    """Harmonised training phantoms (seeds 100+), image and label only (the native volumes are dropped)."""
    from modeling_petct.data.harmonize import harmonize
    from modeling_petct.data.synthetic.phantom import make_phantom

    studies = []
    for i in range(n):
        ph = make_phantom(100 + i, size=size, n_lesions=6)
        study = harmonize(ph.pet, ph.ct, ph.label, spacing=config.target_spacing, normalization=config.normalization)
        study.suv = None
        studies.append(study)
    return studies


def save(model, out, window) -> None:
    """Save with the inference window as ``crop_size`` (training may have used smaller crops)."""
    if window is not None:
        model.config.crop_size = tuple(window)
    model.eval().save_pretrained(out)
    model.train()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="tiny-unet")
    p.add_argument("--size", choices=("small", "autopet"), default="small", help="phantom size of the training studies")
    p.add_argument("--steps", type=int, default=300, help="step budget (the run stops at --steps or --minutes)")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget; the lr decays over it")
    p.add_argument("--studies", type=int, default=6)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--crop", type=int, nargs=3, default=None, help="training crop (default: the preset's crop)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--save-every", type=float, default=10.0, help="minutes between checkpoints")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from modeling_petct import PetCtConfig, PetCtForSegmentation

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    preset = PetCtConfig.from_preset(args.preset)
    window = tuple(preset.crop_size) if args.crop else None
    overrides = {"crop_size": tuple(args.crop), "mask_cell_size": (16, 16, 16)} if args.crop else {}
    if args.preset == "tiny-unet" and not args.crop:
        overrides = {"crop_size": (32, 64, 64)}  # the earlier benchmark's crop
    config = PetCtConfig.from_preset(args.preset, **overrides)
    t_data = time.perf_counter()
    studies = phantom_studies(args.studies, args.size, config)
    print(f"{len(studies)} {args.size} phantoms harmonised in {time.perf_counter() - t_data:.0f} s", flush=True)
    model = PetCtForSegmentation(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-5)
    budget_s = args.minutes * 60 if args.minutes else None
    t0 = last_save = time.perf_counter()
    losses, step, crop = [], 0, np.array(config.crop_size)
    while step < args.steps and (budget_s is None or time.perf_counter() - t0 < budget_s):
        step += 1
        done = max(step / args.steps, (time.perf_counter() - t0) / budget_s if budget_s else 0.0)
        for group in opt.param_groups:
            group["lr"] = args.lr * (1 - min(done, 0.99)) ** 0.9
        batch = [crops(studies, crop, rng) for _ in range(args.batch)]
        x = torch.from_numpy(np.stack([b[0] for b in batch]).astype(np.float32))
        y = torch.from_numpy(np.stack([b[1] for b in batch]).astype(np.int64))[:, None]
        loss = model(x, labels=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 20 == 0:
            print(f"step {step}: loss {np.mean(losses[-20:]):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        if time.perf_counter() - last_save > args.save_every * 60:
            save(model, args.out, window)
            last_save = time.perf_counter()
    save(model, args.out, window)
    print(f"{args.preset} fine-tuned {step} steps (batch {args.batch}, crop {'x'.join(map(str, crop))}) on "
          f"{args.studies} {args.size} phantoms in {time.perf_counter() - t0:.0f} s: loss {np.mean(losses[:20]):.3f} -> "
          f"{np.mean(losses[-20:]):.3f}, saved to {args.out}")


if __name__ == "__main__":
    main()
