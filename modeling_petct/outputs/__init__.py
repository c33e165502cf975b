"""What a segmented study leaves behind: the lesion table (SUVmax/mean/peak, MTV, TLG), DICOM SEG, pictures, and
``files.write_outputs``, which writes them all or nothing. Every output lies on the PET's own grid."""
