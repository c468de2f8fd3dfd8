"""Datasets: SynthRooms generation, NYUD_MT / PASCAL_MT readers, augmentation, multi-view samples."""
