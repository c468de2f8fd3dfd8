"""SynthRooms: a procedural multi-view indoor dataset rendered by ray casting (numpy).

Each scene is a box-shaped room (four walls, floor, ceiling) holding furniture-like
objects that stand on the floor (boxes rotated about the vertical axis: cabinet,
bed, table; vertical cylinders: lamp, bin; spheres: ball) and flat decorations lying
in the wall planes (window, picture, door), whose boundaries exist in appearance
only. A camera walks a short path through the room like video frames (consecutive
views 5-30 cm and 2-10 degrees apart, height 1.2-1.7 m, nearly horizontal). Every
pixel's ray is cast analytically against all surfaces at once (vectorised over
pixels), which gives exact depth, normals, classes and instances; the image is a
procedural texture attached to surface coordinates (stripes, checks, value noise,
grain; colours drawn from one palette per scene, shared by all classes), shaded by a
point light (Lambertian, with cast shadows) plus ambient light, plus sensor noise.

Output layout (NYUD_MT-like), ``<id> = s<scene:04d>_f<frame:02d>``:

==========================  ===========================================================
``images/<id>.png``         RGB uint8
``depth/<id>.npy``          float32 z-depth in metres (every pixel valid: the room is closed)
``normals/<id>.png``        uint8 ``round((n + 1) / 2 * 255)``, camera frame (x right,
                            y down, z forward), facing the camera
``segmentation/<id>.png``   uint8, 0 = void (unused), class k stored as k + 1
``edge/<id>.png``           uint8 0/255; a pixel is 255 when any 4-neighbour belongs to a
                            different instance (both sides of a boundary are marked)
``saliency/<id>.png``       uint8 0/255: exactly the pixels of the object classes
``instances/<id>.png``      uint16 instance id, unique within a scene, stable across views
``cameras/<id>.json``       ``{"K", "cam2world", "scene", "frame"}``
``gt_sets/{train,val}.txt`` one id per line; split by scene
``meta.json``               generator version, parameters, classes, encodings, depth range
==========================  ===========================================================

Same arguments give byte-identical files, whatever the number of worker processes:
scene ``i`` is drawn from ``SeedSequence(seed, spawn_key=(0, i))`` alone (so it does not
depend on the number of scenes), PNGs are written by PIL with fixed options, JSON with
sorted keys, and ``meta.json`` holds no timestamps. The folder is built under a
temporary sibling name and renamed into place at the end.

Entry points: :func:`generate` (files), :func:`render_scene_views` (arrays in memory),
:func:`run_cli` (``mtlsearch data synthrooms``).

Modules: :mod:`~mtlsearch.data.synthrooms.scenes` (scene model and sampling),
:mod:`~mtlsearch.data.synthrooms.raycast` (ray/surface intersections),
:mod:`~mtlsearch.data.synthrooms.shading` (textures, lighting, label maps of a view),
:mod:`~mtlsearch.data.synthrooms.writer` (files, workers, CLI); this package re-exports
their public names.
"""

from __future__ import annotations

from mtlsearch.data.synthrooms.scenes import (
    CLASS_ID,
    CYLINDER_SIZES,
    OBJECT_CLASS_IDS,
    Decoration,
    Material,
    Obj,
    Scene,
    sample_scene,
)
from mtlsearch.data.synthrooms.shading import (
    albedo,
    boundaries,
    labelled_frames,
    render_scene_views,
    render_view,
    value_noise,
)
from mtlsearch.data.synthrooms.writer import (
    GENERATOR_VERSION,
    MODALITIES,
    OUTPUT_KIND,
    generate,
    run_cli,
    split_scenes,
    view_id,
)

__all__ = [
    "CLASS_ID",
    "CYLINDER_SIZES",
    "Decoration",
    "GENERATOR_VERSION",
    "MODALITIES",
    "Material",
    "OBJECT_CLASS_IDS",
    "OUTPUT_KIND",
    "Obj",
    "Scene",
    "albedo",
    "boundaries",
    "generate",
    "labelled_frames",
    "render_scene_views",
    "render_view",
    "run_cli",
    "sample_scene",
    "split_scenes",
    "value_noise",
    "view_id",
]
