"""Write one segmented study's files, all or nothing: the mask on the PET grid, the lesion table, the DICOM SEG."""

from __future__ import annotations

import contextlib


def write_outputs(result, mask_path, *, stats_csv=None, stats_json=None, dicom_seg=None,
                  model_name: str = "petct-fm", organs_out=None) -> dict:
    """Write the mask (PET grid, PET header reused) and the optional lesion table / DICOM SEG / organ map, all or
    nothing. With ``result.organs`` the lesion table has its organ columns and the SEG one segment per organ.

    Everything is computed in memory first; each file goes to a temporary name and is renamed only after every
    file was written, so a refused input or a failed writer leaves no output behind. Returns the study totals.
    """
    from ..atomic import atomic_path
    from ..data.io import write_volume
    from ..errors import PetCtInputError
    from .lesions import lesion_table, write_lesion_csv, write_lesion_json

    organs = getattr(result, "organs", None)
    if organs_out is not None and organs is None:
        raise PetCtInputError(organs_out, "--organs-out needs an organ-aware model or --organs (no organ map here)")
    names = getattr(result, "organ_names", ())
    rows, totals = lesion_table(result.mask, result.pet, organs, names)
    if result.pet.meta.get("suv_conversion"):  # a Bq/ml PET converted from the user's weight/dose/times (HI)
        totals["suv_conversion"] = result.pet.meta["suv_conversion"]
    if organs is not None:
        totals.update(organ_labels={i: n for i, n in enumerate(names, start=1)}, organ_source=result.organ_source,
                      suppressed_physiological=result.suppressed)
    seg = None
    if dicom_seg is not None:
        from .dicom_seg import build_dicom_seg

        seg = build_dicom_seg(result.mask, result.pet, model_name=model_name, organs=organs, organ_names=names)
    with contextlib.ExitStack() as stack:
        write_volume(result.mask, stack.enter_context(atomic_path(mask_path)))
        if organs_out is not None:
            write_volume(organs, stack.enter_context(atomic_path(organs_out)))
        if stats_csv is not None:
            write_lesion_csv(stack.enter_context(atomic_path(stats_csv)), rows, with_organs=organs is not None)
        if stats_json is not None:
            write_lesion_json(stack.enter_context(atomic_path(stats_json)), rows, totals)
        if seg is not None:
            seg.save_as(stack.enter_context(atomic_path(dicom_seg)))
    return totals
