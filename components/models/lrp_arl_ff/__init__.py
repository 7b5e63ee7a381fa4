"""The lrp-arl-ff family (paper 001, Yu et al., ABAW5 / CVPRW 2023): the model and its circle
loss. Importing the package registers ``lrp_arl_ff*``."""

from components.models.lrp_arl_ff.losses import multilabel_circle_loss
from components.models.lrp_arl_ff.model import (AUGraph, LocalRegionPerception, LrpArlFfConfig, LrpArlFfModel,
                                                TransformerFusion, imagenet_to_arcface, knn_adjacency)

__all__ = ["LrpArlFfConfig", "LrpArlFfModel", "LocalRegionPerception", "AUGraph", "TransformerFusion",
           "knn_adjacency", "imagenet_to_arcface", "multilabel_circle_loss"]
