"""Train a tiny segmentation model on phantom studies for a few hundred steps, so inference recipes can be compared
on a network whose output means something (random weights make every recipe comparison noise).

    python benchmarks/inference_finetune_tiny.py --out runs/tiny-seg --steps 300
    python benchmarks/inference_segment.py --size small --model runs/tiny-seg --studies 3

Not the package's training recipe (see train_seg.py): in-memory phantoms, lesion-biased random crops, DiceCE, AdamW.
Prints one summary line.
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--studies", type=int, default=6)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from modeling_petct import PetCtConfig, PetCtForSegmentation
    from modeling_petct.data.harmonize import harmonize
    from modeling_petct.data.synthetic.phantom import make_phantom

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    config = PetCtConfig.from_preset("tiny-unet", crop_size=(32, 64, 64))
    studies = []
    for i in range(args.studies):  # training seeds 100+; benchmark studies use seeds 1-9
        ph = make_phantom(100 + i, size="small", n_lesions=6)
        studies.append(harmonize(ph.pet, ph.ct, ph.label, spacing=config.target_spacing,
                                 normalization=config.normalization))  # fmt: skip
    model = PetCtForSegmentation(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-5)
    t0, losses = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        batch = [crops(studies, np.array(config.crop_size), rng) for _ in range(args.batch)]
        x = torch.from_numpy(np.stack([b[0] for b in batch]).astype(np.float32))
        y = torch.from_numpy(np.stack([b[1] for b in batch]).astype(np.int64))[:, None]
        loss = model(x, labels=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 20 == 0:
            print(f"step {step}: loss {np.mean(losses[-20:]):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    model.eval().save_pretrained(args.out)
    print(f"tiny-unet fine-tuned {args.steps} steps on {args.studies} phantoms in {time.perf_counter() - t0:.0f} s: "
          f"loss {np.mean(losses[:20]):.3f} -> {np.mean(losses[-20:]):.3f}, saved to {args.out}")


if __name__ == "__main__":
    main()
