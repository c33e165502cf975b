"""What a segmented study leaves behind: the lesion table (SUVmax/mean/peak, MTV, TLG), DICOM SEG, pictures, and
``files.write_study``, the one writer every caller uses (all files or none, with a settings record beside them).
Every output lies on the PET's own grid."""
