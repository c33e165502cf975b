"""A synthetic PET/CT cohort on disk and its harmonised cache: the data behind the quickstart, the study demo and tests.

The studies go through the same path as real data: NIfTI files on disk -> read (SUV/HU) -> harmonise -> StudyCache.
:func:`build_cohort` lays it out in the paper's regime: labelled training, validation and test studies from one
AutoPET-like centre (half lesion-free), a small test set from a centre never trained on, and an unlabelled
pretraining pool from several centres (different PSF, noise, SUV calibration, CT noise, whole-body or torso scans).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.conventions import DEFAULT_NORMALIZATION, HARMONISED_SPACING_MM
from ..seeds import cohort_pool_seed


def harmonize_into_cache(study_dirs: list[Path], cache, *, spacing=HARMONISED_SPACING_MM,
                         normalization: str = DEFAULT_NORMALIZATION, progress=None) -> list[str]:
    """Harmonise `<dir>/{PET,CT,SEG,organs}.nii.gz` studies into `cache` by `data.cache.harmonize_many`, the path real
    data take (plausibility checks, organ maps, provenance), skipping ids already there; returns the ids. A phantom
    that fails a check is an error, not a skipped study."""
    from ..data.cache import harmonize_many

    ids = []
    for i, study_dir in enumerate(study_dirs):
        row = phantom_row(Path(study_dir))
        summary = harmonize_many([row], cache, spacing=spacing, normalization=normalization, progress=False)
        if summary.failed:
            raise RuntimeError(summary.report())
        ids.append(row["study_id"])
        if progress is not None:
            progress(i + 1, len(study_dirs), row["study_id"])
    return ids


def phantom_row(study_dir: Path) -> dict:
    """The manifest row of one phantom study folder."""
    def optional(name: str) -> str | None:
        return str(study_dir / name) if (study_dir / name).exists() else None

    return {"study_id": study_dir.name, "pet_path": str(study_dir / "PET.nii.gz"),
            "ct_path": str(study_dir / "CT.nii.gz"), "label_path": optional("SEG.nii.gz"),
            "organ_path": optional("organs.nii.gz"), "source": "synthetic-phantom"}


def _phantom_pool(studies: Path, n: int, seed: int, **kwargs) -> list[Path]:
    """`n` phantoms of one cohort seed under `studies`, written unless an earlier call left them complete."""
    from ..data.synthetic.phantom import write_phantom_cohort

    expected = [studies / f"phantom_{seed:03d}_{i:04d}" for i in range(n)]
    if not all((d / "phantom.json").exists() for d in expected):
        expected = write_phantom_cohort(studies, n, seed, size="small", **kwargs)
    return expected


def phantom_cache(root: str | Path, n: int, seed: int = 0, *, spacing=HARMONISED_SPACING_MM,
                  lesion_free_fraction: float = 0.2, progress=None):
    """`root/studies/<id>/*.nii.gz` (n small phantoms) harmonised into `root/cache`; returns (StudyCache, study dirs).

    Reuses what an earlier call left (a half-built cohort is completed, not redone).
    """
    from ..data.cache import StudyCache

    root = Path(root)
    expected = _phantom_pool(root / "studies", n, seed, lesion_free_fraction=lesion_free_fraction)
    cache = StudyCache(root / "cache")
    harmonize_into_cache(expected, cache, spacing=spacing, progress=progress)
    return cache, expected


@dataclass(frozen=True)
class CohortPlan:
    """How many studies of each role. Labelled roles come from `labelled_centre`, half of them lesion-free (autoPET);
    `held_out_test` from `held_out_centre` (never trained on); `unlabelled` is (centre, n) pairs without label files."""

    train: int = 50
    val: int = 12
    test: int = 24
    held_out_test: int = 12
    unlabelled: tuple = (("A", 40), ("B", 40), ("C", 40))
    labelled_centre: str = "A"
    held_out_centre: str = "D"
    lesion_free_fraction: float = 0.5

    def pools(self, seed: int) -> list[tuple[str, str, int, int, bool]]:
        """(role, centre, n, cohort seed, labelled) per pool; cohort seeds differ per role, so study ids never clash."""
        labelled = [(role, self.labelled_centre, getattr(self, role)) for role in ("train", "val", "test")]
        labelled.append(("held_out_test", self.held_out_centre, self.held_out_test))
        out = [(role, centre, n, cohort_pool_seed(seed, role), True) for role, centre, n in labelled]
        out += [("unlabelled", centre, n, cohort_pool_seed(seed, "unlabelled", i), False)
                for i, (centre, n) in enumerate(self.unlabelled)]
        return [p for p in out if p[2] > 0]


@dataclass
class Cohort:
    cache: object  # StudyCache
    roles: dict[str, list[str]]  # role -> study ids
    dirs: dict[str, Path]  # study id -> folder with PET/CT(/SEG/organs).nii.gz
    id_files: dict[str, Path] = field(default_factory=dict)  # role (and mae_train, mae_val) -> text file of ids

    @property
    def mae_train(self) -> list[str]:
        """The pretraining corpus: the unlabelled pool plus the labelled pool's images; never validation or test."""
        return self.roles.get("unlabelled", []) + self.roles["train"]


def build_cohort(root: str | Path, plan: CohortPlan = CohortPlan(), seed: int = 0, *, spacing=HARMONISED_SPACING_MM,
                 progress=None) -> Cohort:
    """Write every pool of `plan` under `root/studies/<role>/`, harmonise all into `root/cache`, and write one id file
    per role under `root/splits/` (plus `mae_train.txt`, `mae_val.txt`). Resumes a half-built cohort."""
    from ..data.cache import StudyCache

    root = Path(root)
    cache = StudyCache(root / "cache")
    roles: dict[str, list[str]] = {}
    dirs: dict[str, Path] = {}
    for role, centre, n, pool_seed, labelled in plan.pools(seed):
        pool = _phantom_pool(root / "studies" / role, n, pool_seed, centre=centre, labels=labelled,
                             lesion_free_fraction=plan.lesion_free_fraction)
        ids = harmonize_into_cache(pool, cache, spacing=spacing, progress=progress)
        roles.setdefault(role, []).extend(ids)
        dirs.update(zip(ids, pool))
    cohort = Cohort(cache, roles, dirs)
    splits = root / "splits"
    splits.mkdir(parents=True, exist_ok=True)
    for name, ids in {**roles, "mae_train": cohort.mae_train, "mae_val": roles["val"]}.items():
        cohort.id_files[name] = splits / f"{name}.txt"
        cohort.id_files[name].write_text("\n".join(ids) + "\n")
    (splits / "plan.json").write_text(json.dumps({"seed": seed, **asdict(plan)}, indent=1))
    return cohort
