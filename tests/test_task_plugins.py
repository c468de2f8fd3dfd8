"""Every hook of every registered task (mtlsearch/tasks/*), on numbers that could come
out wrong: label decoding of tiny known files, augmentation, hand-computed losses,
activation ranges, decoded predictions, preview colours, metrics, rotations; and a
task added at run time flows through readers, augmentation and the loss."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from mtlsearch.config import EvalConfig, load_config
from mtlsearch.data.nyud import NyudReader
from mtlsearch.data.transforms import transform_view
from mtlsearch.metrics import build_metrics, metric_class
from mtlsearch.tasks import (
    IGNORE,
    NUM_CLASSES,
    TASKS,
    LabelFiles,
    TaskSpec,
    get_task,
    register_task,
    task_loss,
)
from mtlsearch.tasks.edge import context_edges
from mtlsearch.tasks.normals import NORMALS_VALID_CONTEXT_CLASSES

ALL = list(TASKS)
CLASS_TASKS = [t for t in ALL if TASKS[t].classes]


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def test_registry_order_and_builtins() -> None:
    assert ALL == ["semseg", "depth", "normals", "edge", "sal", "parts"]
    assert dict(NUM_CLASSES) == {
        "synthrooms": {"semseg": 12, "parts": 7},
        "nyud": {"semseg": 40, "parts": 7},
        "pascal": {"semseg": 21, "parts": 7},
    }
    with pytest.raises(ValueError, match="registered twice"):
        register_task(type(TASKS["depth"]))
    with pytest.raises(KeyError, match="known: semseg"):
        get_task("nope")


@pytest.mark.parametrize("task", ALL)
def test_channels_flags_and_metric_class(task: str) -> None:
    spec = TASKS[task]
    if spec.classes:
        for layout, n in spec.classes.items():
            assert spec.channels(layout) == n
        assert spec.channels("pascal", {task: 5}) == 5
        assert spec.discrete
    else:
        assert spec.channels("nyud", {task: 5}) == {"normals": 3}.get(task, 1)
    assert spec.discrete == (task in ("semseg", "edge", "sal", "parts"))
    assert spec.unpadded == (task == "edge")
    assert spec.ray_depth == (task == "depth")
    assert metric_class(task).__name__ == spec.scorer
    assert spec.metric in spec.metrics and spec.mode == spec.metrics[spec.metric]


@pytest.mark.parametrize("task", ALL)
def test_empty_label_and_label_array(task: str) -> None:
    spec = TASKS[task]
    empty = spec.empty_label((2, 3))
    assert empty.shape == ((2, 3, 3) if task == "normals" else (2, 3))
    assert empty.dtype == (np.uint8 if spec.classes else np.float32)
    assert (empty == spec.ignore).all() and not spec.valid(empty).any()
    # label_array inverts transform_label without augmentation
    window = spec.example_label(1, (2, 3), spec.channels(), torch.Generator().manual_seed(0))[0]
    decoded = spec.label_array(window)
    assert decoded.shape[:2] == (2, 3)
    again = spec.transform_label(decoded.astype(spec.label_dtype), np.ones((2, 3), bool), 1.0, False)
    assert torch.equal(again, window.to(again.dtype))


def test_transform_label_scale_flip_and_padding() -> None:
    inside = np.array([[True, False]])
    out = TASKS["depth"].transform_label(np.array([[3.0, 4.0]], np.float32), inside, 2.0, False)
    assert out.dtype == torch.float32 and out.tolist() == [[[1.5, 0.0]]]
    n = np.zeros((1, 2, 3), np.float32)
    n[0, 0] = [0.6, 0.0, 0.8]
    n[0, 1] = [1.0, 0.0, 0.0]
    out = TASKS["normals"].transform_label(n, inside, 2.0, True)
    assert out.shape == (3, 1, 2)
    assert torch.allclose(out[:, 0, 0], torch.tensor([-0.6, 0.0, 0.8])) and (out[:, 0, 1] == 0).all()
    out = TASKS["semseg"].transform_label(np.array([[3, 4]], np.uint8), inside, 2.0, True)
    assert out.dtype == torch.int64 and out.tolist() == [[3, IGNORE]]
    for task in ("edge", "sal"):
        out = TASKS[task].transform_label(np.array([[1.0, 0.0]], np.float32), inside, 2.0, True)
        assert out.dtype == torch.float32 and out.tolist() == [[[1.0, float(IGNORE)]]]


def test_check_label_problems_and_figures() -> None:
    sem = TASKS["semseg"].check_label(np.array([[0, 3, 255], [12, 1, 1]], np.uint8), 12)
    assert sem.problem == "class values [12] outside 0..11 (and 255 ignore)"
    assert sem.classes == {0, 1, 3, 12}
    assert TASKS["parts"].check_label(np.array([[0, 6]], np.uint8), 7) .problem is None
    depth = TASKS["depth"]
    assert depth.check_label(np.array([[0.0, 2.0, 5.5]], np.float32), 0).ranges == {"depth (m)": (2.0, 5.5)}
    assert depth.check_label(np.array([[1.0, -0.5]], np.float32), 0).problem == "negative depth (min -0.500)"
    assert depth.check_label(np.array([[np.nan]], np.float32), 0).problem == "non-finite depth values"
    n = np.zeros((1, 2, 3), np.float32)
    n[0, 0, 2] = 1.0
    check = TASKS["normals"].check_label(n, 0)
    assert check.problem is None and check.ranges == {"normals valid fraction": (0.5, 0.5)}
    n[0, 1, 2] = 2.0
    assert TASKS["normals"].check_label(n, 0).problem == "normals of non-unit length"
    edge = TASKS["edge"].check_label(np.array([[0.0, 1.0, 1.0, 255.0]], np.float32), 0)
    assert edge.problem is None and edge.ranges == {"edge positive fraction": (0.5, 0.5)}
    assert TASKS["edge"].check_label(np.array([[0.5]], np.float32), 0).problem == "values [0.5] outside [0, 1]"
    assert TASKS["sal"].check_label(np.array([[0.5, 1.0]], np.float32), 0).problem is None
    assert TASKS["sal"].check_label(np.array([[2.0]], np.float32), 0).problem == "values [2.0] outside [0, 1]"


def test_losses_on_known_inputs() -> None:
    # cross-entropy of uniform logits: log C on every valid pixel
    for task, c in (("semseg", 12), ("parts", 7)):
        label = torch.tensor([[[0, 3], [IGNORE, 1]]])
        assert math.isclose(float(task_loss(task, torch.zeros(1, c, 2, 2), label)), math.log(c), rel_tol=1e-6)
    # L1 on valid depth: |2 - 3| and |2 - 1|, the 0 pixel skipped
    depth = task_loss("depth", torch.full((1, 1, 1, 3), 2.0), torch.tensor([[[[0.0, 3.0, 1.0]]]]))
    assert float(depth) == 1.0
    # normals: the prediction (0, 0, 2) is normalised to (0, 0, 1); label (1, 0, 0) -> L1 2/3
    pred = torch.tensor([0.0, 0.0, 2.0]).view(1, 3, 1, 1).repeat(1, 1, 1, 2)
    target = torch.zeros(1, 3, 1, 2)
    target[0, 0, 0, 0] = 1.0
    assert math.isclose(float(task_loss("normals", pred, target)), 2 / 3, rel_tol=1e-6)
    # balanced BCE: (w softplus(-2) + (1 - w) softplus(-1)) / 2 on logits (2, -1), labels (1, 0)
    logits = torch.tensor([2.0, -1.0, 5.0]).view(1, 1, 1, 3)
    label = torch.tensor([1.0, 0.0, float(IGNORE)]).view(1, 1, 1, 3)

    def by_hand(w: float) -> float:
        return (w * math.log1p(math.exp(-2.0)) + (1 - w) * math.log1p(math.exp(-1.0))) / 2

    assert math.isclose(float(task_loss("edge", logits, label)), by_hand(0.95), rel_tol=1e-6)
    cfg = load_config(None, {"loss.edge_pos_weight": 0.8})
    assert math.isclose(float(task_loss("edge", logits, label, cfg=cfg)), by_hand(0.8), rel_tol=1e-6)
    # saliency weighs positives by the batch's negative fraction (here 1/2)
    assert math.isclose(float(task_loss("sal", logits, label)), by_hand(0.5), rel_tol=1e-6)


@pytest.mark.parametrize("task", ALL)
def test_loss_resizes_and_skips_unlabelled(task: str) -> None:
    spec = TASKS[task]
    pred = torch.randn(2, spec.channels(), 4, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    shape = (2, 8, 10) if spec.classes else (2, spec.channels(), 8, 10)
    empty = torch.full(shape, spec.ignore, dtype=torch.int64 if spec.classes else torch.float32)
    zero = task_loss(task, pred, empty)
    assert float(zero.detach()) == 0.0
    zero.backward()  # stays in the graph
    label = spec.example_label(2, (8, 10), spec.channels(), torch.Generator().manual_seed(2))
    up = task_loss(task, pred, label, "upsample")
    down = task_loss(task, pred, label, "downsample")
    up, down = float(up.detach()), float(down.detach())
    assert up > 0 and down > 0 and up != down


@pytest.mark.parametrize("task", ALL)
def test_activation_ranges_and_inverse(task: str) -> None:
    spec = TASKS[task]
    x = torch.randn(2, spec.channels(), 3, 4, generator=torch.Generator().manual_seed(3)) * 4
    a = spec.activate(x)
    if spec.classes:
        assert torch.allclose(a.sum(1), torch.ones(2, 3, 4)) and (a >= 0).all()
        assert torch.allclose(spec.activate(spec.deactivate(a)), a, atol=1e-6)
    elif task in ("edge", "sal"):
        assert ((a > 0) & (a < 1)).all()
        assert torch.allclose(spec.deactivate(a), x, atol=1e-3)
    elif task == "normals":
        assert torch.allclose(a.norm(dim=1), torch.ones(2, 3, 4))
        assert torch.equal(spec.deactivate(a), a)
    else:
        assert torch.equal(a, x) and torch.equal(spec.deactivate(a), x)


def test_decode_prediction_and_summary() -> None:
    logits = torch.zeros(12, 1, 3)
    logits[5, 0, 0] = logits[2, 0, 1] = logits[2, 0, 2] = 1.0
    classes = TASKS["semseg"].decode_prediction(logits)
    assert classes.dtype == np.uint8 and classes.tolist() == [[5, 2, 2]]
    assert TASKS["semseg"].summary(classes) == "semseg 2 classes"
    depth = TASKS["depth"].decode_prediction(torch.tensor([[[1.0, 2.5]]]))
    assert depth.dtype == np.float32 and depth.tolist() == [[1.0, 2.5]]
    assert TASKS["depth"].summary(depth) == "depth 1.00-2.50 m"
    normals = TASKS["normals"].decode_prediction(torch.tensor([3.0, 0.0, 4.0]).view(3, 1, 1))
    assert normals.shape == (1, 1, 3) and np.allclose(normals[0, 0], [0.6, 0.0, 0.8])
    assert TASKS["normals"].summary(normals) == "normals"
    for task in ("edge", "sal"):
        prob = TASKS[task].decode_prediction(torch.tensor([[[0.0, math.log(3.0)]]]))
        assert prob.dtype == np.float32 and np.allclose(prob, [[0.5, 0.75]])
        assert TASKS[task].summary(prob) == task


def test_output_bias() -> None:
    model = SimpleNamespace(depth_init=2.5)
    assert {t: TASKS[t].output_bias(model) for t in ALL} == {t: (2.5 if t == "depth" else None) for t in ALL}


def test_rotation_and_renders() -> None:
    rot = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])[None]  # 90 deg about z
    values = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]]])  # (B, N, 3)
    rotated = TASKS["normals"].rotate(values, rot)
    assert torch.allclose(rotated, torch.tensor([[[0.0, 1.0, 0.0], [-0.6, 0.0, 0.8]]]))
    for task in ALL:
        if task != "normals":
            assert TASKS[task].rotate(values, rot) is values
    render = torch.tensor([0.0, 3.0, 4.0]).view(1, 3, 1, 1)
    assert torch.allclose(TASKS["normals"].finish_render(render).flatten(), torch.tensor([0.0, 0.6, 0.8]))
    assert TASKS["depth"].finish_render(render) is render


@pytest.mark.parametrize("task", ALL)
def test_preview_colours(task: str) -> None:
    import matplotlib

    spec = TASKS[task]
    label = spec.empty_label((2, 3))
    if task == "normals":
        label[0, 0] = [0.0, 0.0, 1.0]
    else:
        label[0, 0], label[0, 1] = 1, 2
    rgba = spec.preview(label, spec.colour_scale(label, spec.channels()))
    assert rgba.shape == (2, 3, 4) and rgba.dtype == np.uint8
    assert rgba[0, 0, 3] == 255 and (rgba[1, :, 3] == 0).all()  # invalid pixels transparent
    assert (spec.preview(label, prediction=True)[..., 3] == 255).all()
    if task == "normals":
        assert rgba[0, 0].tolist() == [127, 127, 255, 255]  # (n + 1) / 2, as imshow truncates
    else:
        lo, hi = spec.colour_scale(label, spec.channels()) or (1.0, 2.0)
        expected = matplotlib.colormaps[spec.cmap]((1.0 - lo) / (hi - lo), bytes=True)
        assert tuple(rgba[0, 0]) == tuple(expected)
    assert {t: TASKS[t].colour_scale(label, 7) for t in ("semseg", "edge")} == {"semseg": (0.0, 6.0),
                                                                                 "edge": (0.0, 1.0)}
    assert TASKS["depth"].colour_scale(np.array([[0.0, 2.0, 4.0]]), 1) == (2.0, 4.0)
    assert TASKS["depth"].colour_scale(np.zeros((1, 2)), 1) is None


@pytest.mark.parametrize("task", ALL)
def test_metric_of_a_perfect_prediction(task: str) -> None:
    spec = TASKS[task]
    metric = build_metrics([task], {"semseg": 4, "parts": 3}, EvalConfig(edge_thresholds=3))[task]
    assert isinstance(metric, metric_class(task))
    c = spec.channels("synthrooms", {"semseg": 4, "parts": 3})
    label = spec.example_label(1, (16, 16), c, torch.Generator().manual_seed(4))
    if spec.classes:
        pred = torch.nn.functional.one_hot(label, c).permute(0, 3, 1, 2).float() * 10
    elif task in ("edge", "sal"):
        pred = (label * 2 - 1) * 20
    else:
        pred = label.clone()
    metric.update(pred, label)
    scores = metric.compute()
    assert set(scores) == set(spec.metrics)
    if task in ("semseg", "parts", "sal"):
        assert scores[spec.metric] == pytest.approx(100.0)
    if task in ("depth", "normals"):
        assert scores[spec.metric] == pytest.approx(0.0, abs=1e-3)


# ---------------------------------------------------------------------------
# Label files per dataset format
# ---------------------------------------------------------------------------


def test_nyud_files_decode_tiny_known_arrays(tmp_path: Path) -> None:
    files = {t: TASKS[t].files["nyud"] for t in ALL if "nyud" in TASKS[t].files}
    assert list(files) == ["semseg", "depth", "normals", "edge", "sal"]
    reader = SimpleNamespace(root=tmp_path)
    _png(tmp_path / "segmentation" / "a.png", np.array([[0, 1, 5]], np.uint8))
    assert files["semseg"].read(reader, "a").tolist() == [[255, 0, 4]]
    _png(tmp_path / "depth" / "a.png", np.array([[0, 1500, 2000]], np.uint16))
    assert files["depth"].path(tmp_path, "a").suffix == ".png"  # .npy first, but missing
    assert files["depth"].read(reader, "a").tolist() == [[0.0, 1.5, 2.0]]
    np.save(tmp_path / "depth" / "a.npy", np.array([[np.inf, 3.0], [0.5, -np.nan]], np.float32))
    assert files["depth"].read(reader, "a").tolist() == [[0.0, 3.0], [0.5, 0.0]]
    rgb = np.array([[[255, 128, 128], [128, 128, 128]]], np.uint8)  # (1, 0, 0) and ~zero (invalid)
    _png(tmp_path / "normals" / "a.png", rgb)
    n = files["normals"].read(reader, "a")
    assert n.shape == (1, 2, 3) and np.allclose(n[0, 0], [1.0, 0.0, 0.0], atol=0.01) and (n[0, 1] == 0).all()
    _png(tmp_path / "edge" / "a.png", np.array([[0, 3, 255]], np.uint8))
    assert files["edge"].read(reader, "a").tolist() == [[0.0, 1.0, 1.0]]
    _png(tmp_path / "saliency" / "a.png", np.array([[100, 200]], np.uint8))
    assert files["sal"].read(reader, "a").tolist() == [[0.0, 1.0]]
    assert all(f.provided(tmp_path) for f in files.values())
    meta = SimpleNamespace(meta={"classes": ["a", "b", "c"]})
    assert files["semseg"].num_classes(meta) == 3 and files["depth"].num_classes(meta) is None


def test_pascal_files_decode_tiny_known_arrays(tmp_path: Path) -> None:
    files = {t: TASKS[t].files["pascal"] for t in ALL if "pascal" in TASKS[t].files}
    assert list(files) == ["semseg", "normals", "edge", "sal", "parts"]
    _png(tmp_path / "semseg" / "pascal-context" / "a.png", np.array([[0, 15]], np.uint8))
    assert files["semseg"].path(tmp_path, "a").parent.name == "pascal-context"
    _png(tmp_path / "semseg" / "VOC12" / "a.png", np.array([[15, 255]], np.uint8))
    assert files["semseg"].read(SimpleNamespace(root=tmp_path), "a").tolist() == [[15, 255]]
    context = np.array([[440] * 3 + [360] * 3] * 5)  # wall (an NYUv2 class) | sky (not one)
    assert 440 in NORMALS_VALID_CONTEXT_CLASSES and 360 not in NORMALS_VALID_CONTEXT_CLASSES
    edges = np.zeros((5, 6), np.float32)
    edges[1:, 2] = 1.0  # the 2-pixel Laplacian band (columns 2, 3) thinned to one line
    assert np.array_equal(context_edges(context), edges)
    reader = SimpleNamespace(root=tmp_path, mask_normals=True, has_context=True,
                             context_labels=lambda id_: context, context_path=lambda id_: tmp_path / "c.mat")
    assert np.array_equal(files["edge"].read(reader, "a"), edges)
    _png(tmp_path / "normals_distill" / "a.png", np.full((5, 6, 3), [128, 128, 0], np.uint8))
    n = files["normals"].read(reader, "a")
    assert np.allclose(n[:, :3], [0.0, 0.0, -1.0], atol=0.01) and (n[:, 3:] == 0).all()
    reader.mask_normals = False
    assert (files["normals"].read(reader, "a")[:, 3:, 2] < -0.99).all()
    assert files["parts"].absent(np.full((2, 2), IGNORE, np.uint8))
    assert not files["parts"].absent(np.array([[0, IGNORE]], np.uint8))
    assert not files["sal"].absent(np.full((2, 2), IGNORE, np.float32))


# ---------------------------------------------------------------------------
# A task added at run time: one class, registered, is used everywhere
# ---------------------------------------------------------------------------


@pytest.fixture
def albedo():
    """A toy plug-in task (per-pixel grey albedo in [0, 1]) registered for one test."""

    def decode(path: Path) -> np.ndarray:
        return np.asarray(Image.open(path), dtype=np.float32) / 255.0

    class Albedo(TaskSpec):
        name = "albedo"
        kind = "regression"
        metric = "rmse"
        metrics = {"rmse": "min"}
        ignore = 0.0
        scorer = "DepthMetric"
        title = "albedo"
        files = {"nyud": LabelFiles("albedo", (".png",), decode)}

        def loss(self, pred: torch.Tensor, target: torch.Tensor, cfg=None) -> torch.Tensor:
            return (pred - target).square().mean()

    register_task(Albedo)
    try:
        yield TASKS["albedo"]
    finally:
        del TASKS["albedo"]


def test_a_registered_task_flows_through_reader_transform_and_loss(tmp_path: Path, albedo) -> None:
    _png(tmp_path / "images" / "a.png", np.zeros((2, 2, 3), np.uint8))
    _png(tmp_path / "albedo" / "a.png", np.array([[0, 51], [102, 255]], np.uint8))
    reader = NyudReader(tmp_path, "synthrooms")
    assert reader.tasks == ("albedo",)
    view = reader.read_view("a", ["albedo"])
    assert np.allclose(view["labels"]["albedo"], [[0.0, 0.2], [0.4, 1.0]])
    sample = transform_view(view, (2, 3))  # padded on the right with the ignore value
    assert torch.allclose(sample["labels"]["albedo"], torch.tensor([[[0.0, 0.2, 0.0], [0.4, 1.0, 0.0]]]))
    pred = torch.full((1, 1, 1, 1), 0.5)
    assert float(task_loss("albedo", pred, torch.ones(1, 1, 2, 2))) == pytest.approx(0.25)
    assert build_metrics(["albedo"])["albedo"].__class__.__name__ == "DepthMetric"
