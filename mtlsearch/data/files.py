"""Decoding of dataset files with their sizes checked first: images (decompression
bombs refused), ``.npy`` arrays (numeric, no pickles, not truncated) and ``.mat`` files.

Contract: every function returns numpy data or raises a :class:`UserError` naming the
file (missing, truncated, unreadable or too large). Readers and the task modules'
label decoders read through these.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mtlsearch.errors import UserError


def file_error(path: Path, err: Exception | str) -> UserError:
    """The error of a file that cannot be read: missing, or why not."""
    if not path.exists():
        return UserError(f"missing file: {path}")
    return UserError(f"cannot read {path}: {err}")


MAX_PIXELS = 1 << 26
"""Largest image (about 67 megapixels, 8192 x 8192) any reader decodes: a bigger one is a
decompression bomb or not a dataset image."""


def open_image(path: Path) -> Image.Image:
    """``Image.open`` with the size checked before any pixel is decoded (decompression
    bombs): a :class:`UserError` naming the file. Use as a context manager."""
    try:
        with warnings.catch_warnings():  # the size is checked below, whatever PIL's limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as err:
        raise UserError(f"{path}: image too large ({err})") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise file_error(path, err) from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        img.close()
        raise UserError(f"{path}: {w}x{h} image is larger than {MAX_PIXELS} pixels "
                        "(decompression bomb?)")
    return img


def read_png(path: Path, mode: str | None = None) -> np.ndarray:
    """Decode an image file into a numpy array (``mode`` converts, e.g. ``"RGB"``)."""
    try:
        with open_image(path) as img:
            if mode is not None and img.mode != mode:
                img = img.convert(mode)
            arr = np.array(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise file_error(path, err) from None
    if arr.dtype.kind not in "biuf" or arr.ndim not in (2, 3):
        raise UserError(f"{path}: not a plain image (decoded as {arr.dtype} {arr.shape})")
    return arr


def read_npy(path: Path) -> np.ndarray:
    """Load a ``.npy`` array without pickles: numeric (bool, int or float) dtypes only,
    the header's size checked against the file's before anything is read."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(fh)
            offset = fh.tell()
        if dtype.hasobject or dtype.kind not in "biuf" or dtype.fields is not None:
            raise UserError(f"{path}: expected a numeric array, got dtype {dtype}")
        size = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if size > path.stat().st_size - offset:
            raise UserError(f"{path}: truncated (header {shape} {dtype} needs {size} bytes)")
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, SyntaxError, TypeError) as err:
        raise file_error(path, err) from None


def read_mat(path: Path) -> dict[str, Any]:
    """Load a MATLAB ``.mat`` file (scipy.io.loadmat)."""
    import scipy.io

    try:
        return scipy.io.loadmat(path)
    except Exception as err:  # scipy raises MatReadError and assorted parse errors
        raise file_error(path, err) from None
