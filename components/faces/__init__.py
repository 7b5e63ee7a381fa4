"""Ray-free face pipeline: detection, 68-point landmarks, tracking, alignment, model-input
transforms (background mask, grayscale, Sobel) and temporal landmark differences.

The template and the alignment live in ``components.geometry`` (shared with the synthetic
generator) and are re-exported here."""

from components.geometry import (
    STABLE_POINTS,
    TEMPLATE_68,
    AlignedFace,
    align_face,
    crop_template,
    similarity_transform,
    transform_points,
)
from components.faces.detectors import (
    DlibHogDetector,
    FaceDetector,
    MtcnnDetector,
    build_detector,
)
from components.faces.landmarks import (
    DlibLandmarker,
    FanLandmarker,
    LandmarkModel,
    build_landmarker,
    dlib_predictor_path,
    fan_weights_path,
)
from components.faces.pipeline import FacePipeline, FacePipelineConfig, FaceResult
from components.faces.tracking import FaceTracker, box_iou, canonical_box, shape_residual
from components.faces.transforms import (
    background_mask,
    hflip_sample,
    landmark_diffs,
    model_input,
    sobel_magnitude,
    to_gray,
)
from components.faces.types import Face

__all__ = [
    "Face",
    "FaceDetector",
    "DlibHogDetector",
    "MtcnnDetector",
    "build_detector",
    "LandmarkModel",
    "DlibLandmarker",
    "FanLandmarker",
    "build_landmarker",
    "dlib_predictor_path",
    "fan_weights_path",
    "TEMPLATE_68",
    "STABLE_POINTS",
    "AlignedFace",
    "similarity_transform",
    "transform_points",
    "crop_template",
    "align_face",
    "background_mask",
    "to_gray",
    "sobel_magnitude",
    "model_input",
    "landmark_diffs",
    "hflip_sample",
    "FaceTracker",
    "canonical_box",
    "shape_residual",
    "box_iou",
    "FacePipelineConfig",
    "FaceResult",
    "FacePipeline",
]
