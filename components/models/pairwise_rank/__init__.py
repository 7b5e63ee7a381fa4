"""The pairwise-rank family (paper 004, Saito et al., ABAW 2021): the model with its three
training steps, its video context (pairs, window statistics G) and its ranking losses.
Importing the package registers ``pairwise_rank*``."""

from components.models.pairwise_rank.context import (RunningStandardize, batch_frame_index, batch_video_ids,
                                                     group_ids, pair_indices, subject_groups, window_statistics)
from components.models.pairwise_rank.losses import (misordering_loss, misordering_probability, ranking_hinge,
                                                    sigma_from_raw)
from components.models.pairwise_rank.model import N_FRAME_FEATURES, STAGES, PairwiseRankConfig, PairwiseRankModel

__all__ = ["PairwiseRankConfig", "PairwiseRankModel", "STAGES", "N_FRAME_FEATURES", "RunningStandardize",
           "window_statistics", "group_ids", "pair_indices", "batch_video_ids", "batch_frame_index", "subject_groups",
           "ranking_hinge", "sigma_from_raw", "misordering_probability", "misordering_loss"]
