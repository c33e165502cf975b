"""The synthetic PET/CT cohort: whole-body phantoms with lesions and exact labels, and a DICOM writer for them."""
