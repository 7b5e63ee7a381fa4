"""The sev-net family (paper 003, Yang et al., CVPR 2021): the model and its frozen intra-AU
sentence encoder. Importing the package registers ``sev_net*``."""

from components.models.sev_net.model import SevNetConfig, SevNetModel, cross_modality_attention

__all__ = ["SevNetConfig", "SevNetModel", "cross_modality_attention"]
