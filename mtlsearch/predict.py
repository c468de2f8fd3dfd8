"""Single-image inference with a trained checkpoint (``mtlsearch predict``).

The checkpoint's model is exported (no regularizer, no auxiliary heads) and run on each
image alone, as the papers evaluate: a cross-view model trained on multi-view batches
receives the image duplicated with the identity pose. Each image gives
``<stem>.npz`` (each task's decoded prediction, ``TaskSpec.decode_prediction``: class
maps, depth in metres, unit normals, edge and saliency probabilities) and ``<stem>.png``
(the image beside every task's prediction in its preview colours), written
into ``--out`` by the rule of :mod:`mtlsearch.outputs` (a new folder, or earlier
predictions replaced).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import UnidentifiedImageError

from mtlsearch.errors import UserError
from mtlsearch.tasks import get_task

PREDICTIONS_KIND = "predictions"
"""Marker kind (``.mtlsearch-predictions``): ``--out`` replaces only earlier predictions."""


def _legacy_predictions(folder: Path) -> bool:
    """Predictions written before markers existed: only ``<stem>.npz`` + ``<stem>.png`` pairs."""
    files = list(folder.iterdir())
    stems = {p.stem for p in files}
    return all(p.is_file() and p.suffix in (".npz", ".png") for p in files) and all(
        (folder / f"{s}.npz").is_file() and (folder / f"{s}.png").is_file() for s in stems)

STRIDE = 32
"""Images are padded to a multiple of the backbone's total stride, then cropped back."""


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 array (H, W, 3); a missing or unreadable file, or one larger than
    :data:`mtlsearch.data.reader.MAX_PIXELS` (decompression bomb), is a UserError."""
    from mtlsearch.data.reader import open_image

    if not path.is_file():
        raise UserError(f"image not found: {path}")
    try:
        with open_image(path) as im:
            return np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise UserError(f"cannot read image {path}: {err}") from None


@torch.no_grad()
def predict(model: torch.nn.Module, cfg, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Predict every task of ``model`` for one RGB image; outputs at the image's size."""
    from mtlsearch.data.reader import default_K
    from mtlsearch.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    h, w = rgb.shape[:2]
    image = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    image = ((image - IMAGENET_MEAN) / IMAGENET_STD)[None]
    ph, pw = -h % STRIDE, -w % STRIDE
    image = F.pad(image, (0, pw, 0, ph))
    K = torch.as_tensor(default_K(cfg.data.layout, (h, w)), dtype=torch.float32)[None]
    heads = model(image, K=K)["heads"]
    return {task: get_task(task).decode_prediction(pred[0, :, :h, :w]) for task, pred in heads.items()}


def draw(rgb: np.ndarray, preds: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("image", rgb)]
    panels += [(task, get_task(task).preview(value, prediction=True)) for task, value in preds.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.4), squeeze=False)
    for ax, (title, value) in zip(axes[0], panels):
        ax.imshow(value, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_cli(args: argparse.Namespace) -> int:
    from mtlsearch.checkpoint import load_trained_model
    from mtlsearch.outputs import check_target, output_folder

    out = Path(args.out)
    protect = [Path(args.checkpoint), *(Path(p) for p in args.images)]
    check_target(out, PREDICTIONS_KIND, protect=protect, protect_label="input", legacy=_legacy_predictions)
    images = [Path(p) for p in args.images]
    stems = [p.stem for p in images]
    if len(set(stems)) != len(stems):
        raise UserError("images: two images share a file stem, their outputs would collide: "
                        + ", ".join(sorted({s for s in stems if stems.count(s) > 1})))
    rgbs = [read_image(p) for p in images]
    model, cfg = load_trained_model(args.checkpoint)
    model = model.export()
    mode = "cross-view module, single view (duplicated, identity pose)" if cfg.cvm.enabled else "single view"
    print(f"model {cfg.model.backbone}/{cfg.model.decoder}, tasks {', '.join(cfg.tasks)}; {mode}")
    with output_folder(out, PREDICTIONS_KIND, protect=protect, protect_label="input",
                       legacy=_legacy_predictions) as tmp:
        for path, rgb in zip(images, rgbs):
            preds = predict(model, cfg, rgb)
            np.savez_compressed(tmp / f"{path.stem}.npz", **preds)
            draw(rgb, preds, tmp / f"{path.stem}.png")
            summary = ", ".join(get_task(t).summary(v) for t, v in preds.items())
            print(f"{path.name}: {summary} -> {out / path.stem}.npz, .png")
    return 0
