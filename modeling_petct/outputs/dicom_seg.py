"""A lesion mask as a DICOM Segmentation object (highdicom) that references the source PET series, so PACS and
viewers overlay it on the PET it was computed from.

The mask goes to highdicom as a Volume (its array and world affine), matched to the PET series' own geometry (frames
down axis 0 as the DICOM images stack, rows, columns) by permuting and flipping axes only, never padding, cropping or
resampling, and then required to have exactly that geometry: highdicom
then places every frame and finds its source image from the DICOM geometry, so no slice order or in-plane flip of
the reader can misplace a frame. A mask that is not on the PET's grid is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.geometry import LPS_TO_RAS
from ..data.volume import Volume
from ..errors import PetCtInputError

GRID_TOLERANCE_MM = 1e-2  # the mask's grid and the DICOM geometry may differ by rounding of the header strings


def _series_geometry(sources):
    """The PET series' grid as highdicom's VolumeGeometry: frames stacked along the images' normal."""
    import highdicom as hd

    iop = np.asarray(sources[0].ImageOrientationPatient, float)
    stacking = np.cross(iop[3:], iop[:3])  # highdicom stacks frames right-handed: (frames, rows, columns)
    positions = sorted(float(np.dot(np.asarray(ds.ImagePositionPatient, float), stacking)) for ds in sources)
    first = min(sources, key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, float), stacking)))
    return hd.VolumeGeometry.from_attributes(
        image_position=[float(v) for v in first.ImagePositionPatient], image_orientation=iop.tolist(),
        rows=int(first.Rows), columns=int(first.Columns), pixel_spacing=[float(v) for v in first.PixelSpacing],
        spacing_between_slices=float(np.median(np.diff(positions))) if len(positions) > 1 else 1.0,
        number_of_frames=len(sources), coordinate_system="PATIENT",
        frame_of_reference_uid=getattr(first, "FrameOfReferenceUID", None))


def _on_series_grid(segments: np.ndarray, affine: np.ndarray, sources):
    """``segments`` (on a grid with RAS ``affine``) as a highdicom Volume on the PET series' frames."""
    import highdicom as hd

    geometry = _series_geometry(sources)
    lps = affine.copy()
    lps[:3] = LPS_TO_RAS @ affine[:3]  # the same flip maps RAS to LPS
    volume = hd.Volume(segments, lps, coordinate_system="PATIENT",
                       frame_of_reference_uid=geometry.frame_of_reference_uid)
    matched = volume.match_orientation(geometry)  # axes permuted and flipped: no padding, cropping or resampling
    if not matched.geometry_equal(geometry, tol=GRID_TOLERANCE_MM):
        raise PetCtInputError(sources[0].filename or "PET series", "the mask is not on this PET image's grid")
    return matched


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
    if organs is None:
        segments, regions = (np.asarray(mask.array) > 0).astype(np.uint8), [None]
    else:
        segments, regions = _organ_segments(mask, organs, organ_names)
        regions = regions or [None]
    frames = _on_series_grid(segments.astype(np.uint8), np.asarray(mask.affine, float), sources)
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
