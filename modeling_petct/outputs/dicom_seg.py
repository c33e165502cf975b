"""A lesion mask as a DICOM Segmentation object (highdicom) that references the source PET series, so PACS and
viewers overlay it on the PET it was computed from.

Frames are cut from the mask through DICOM geometry, not array order: for each source PET image the world position
of its pixels (ImagePositionPatient, ImageOrientationPatient, PixelSpacing) is mapped through the mask's affine, so
any slice order or in-plane flip of the reader cannot misplace a frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.geometry import LPS_TO_RAS
from ..data.volume import Volume
from ..errors import PetCtInputError


def _frame(mask: np.ndarray, inverse_affine: np.ndarray, ds) -> np.ndarray:
    """The mask's pixels on one source image's (rows, columns) grid; the grids must coincide voxel for voxel."""
    origin = np.asarray(ds.ImagePositionPatient, float)
    iop = np.asarray(ds.ImageOrientationPatient, float)
    row_mm, col_mm = (float(v) for v in ds.PixelSpacing)  # spacing between rows, between columns
    rr, cc = np.meshgrid(np.arange(int(ds.Rows)), np.arange(int(ds.Columns)), indexing="ij")
    lps = origin + cc[..., None] * col_mm * iop[:3] + rr[..., None] * row_mm * iop[3:]
    ijk = (lps @ LPS_TO_RAS) @ inverse_affine[:3, :3].T + inverse_affine[:3, 3]
    index = np.rint(ijk).astype(int)
    inside = np.all((index >= 0) & (index < mask.shape), axis=-1)
    if np.abs(ijk - index).max() > 1e-2 or not inside.all():
        raise PetCtInputError(ds.filename or "PET series", "the mask is not on this PET image's grid")
    return mask[index[..., 0], index[..., 1], index[..., 2]]


# SNOMED CT codes of the default organ vocabulary (data/organs.py), for each segment's AnatomicRegionSequence.
ORGAN_SNOMED = {"brain": ("12738006", "Brain"), "heart": ("80891009", "Heart"), "liver": ("10200004", "Liver"),
                "spleen": ("78961009", "Spleen"), "kidneys": ("64033007", "Kidney"),
                "urinary_bladder": ("89837001", "Urinary bladder"), "bowel": ("113276009", "Intestine"),
                "lungs": ("39607008", "Lung"), "skeleton": ("272673000", "Bone")}


def _organ_segments(mask: Volume, organs: Volume, organ_names) -> tuple[np.ndarray, list[str]]:
    """A label map with one segment number per organ holding lesions (1..K, in vocabulary order, "other" last) and
    the K organ names; each lesion component goes whole to its organ (outputs.lesions.lesion_organ)."""
    from ..data.organs import OTHER, organ_names as names_of
    from .lesions import lesion_components, lesion_organ

    names = list(names_of(organ_names)) + [OTHER]
    from scipy import ndimage

    components = lesion_components(mask)
    organ_arr = np.asarray(organs.array)
    organ_of = {i: lesion_organ(organ_arr[box][components[box] == i], organ_names)["organ"]
                for i, box in enumerate(ndimage.find_objects(components), start=1) if box is not None}
    present = [n for n in names if n in organ_of.values()]
    lut = np.zeros(int(components.max()) + 1, np.uint8)
    for i, organ in organ_of.items():
        lut[i] = present.index(organ) + 1
    return lut[components], present


# Type 2 attributes (present, may be empty) of the Patient and General Study modules the SEG copies from its source:
# anonymisers often delete them, and highdicom refuses sources without them.
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "StudyID", "AccessionNumber")
LO_MAX = 64  # AlgorithmName and ManufacturerModelName are LO


def _with_type2_attributes(ds):
    """The source dataset with absent type-2 attributes added empty, as DICOM allows for unknown values."""
    for keyword in TYPE2_COPIED:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def _algorithm_name(model_name: str) -> str:
    """A model's name (Hub id, folder name), never a local path, within LO's 64 characters."""
    name = str(model_name or "petct-fm")
    if name.startswith(("/", "~", ".")) or "\\" in name or name.count("/") > 1:
        name = Path(name).name or "petct-fm"
    return name[-LO_MAX:]


def build_dicom_seg(mask: Volume, pet: Volume, *, model_name: str = "petct-fm", label: str = "FDG-avid lesion",
                    organs: Volume | None = None, organ_names=None):
    """A binary DICOM SEG dataset for ``mask`` (on ``pet``'s grid) referencing the PET DICOM series ``pet`` came from.

    With ``organs`` (an organ map on the PET grid) the lesions are split into one segment per organ, labelled
    "FDG-avid lesion (liver)" and carrying the organ's SNOMED code as anatomic region where one is known."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    from .. import __version__

    files = pet.meta.get("dicom_files")
    if not files:
        raise PetCtInputError(pet.source, "--dicom-seg needs the PET as a DICOM series folder (this PET is not DICOM)")
    sources = [_with_type2_attributes(pydicom.dcmread(f)) for f in files]  # in memory: the files are not touched
    model_name = _algorithm_name(model_name)
    inverse = np.linalg.inv(mask.affine)
    if organs is None:
        segments, regions = (np.asarray(mask.array) > 0).astype(np.uint8), [None]
    else:
        segments, regions = _organ_segments(mask, organs, organ_names)
        regions = regions or [None]
    frames = np.stack([_frame(segments, inverse, ds) for ds in sources]).astype(np.uint8)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=model_name, version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label if organ is None else f"{label} ({organ.replace('_', ' ')})",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            anatomic_regions=[Code(ORGAN_SNOMED[organ][0], "SCT", ORGAN_SNOMED[organ][1])]
            if organ in ORGAN_SNOMED else None,
        )
        for number, organ in enumerate(regions, start=1)
    ]
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="petct-fm",
        manufacturer_model_name=model_name,
        software_versions=__version__,
        device_serial_number="0",
        series_description="petct-fm lesion segmentation",
    )
