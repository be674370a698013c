"""Loss terms for distillation: one file per term, `combined.DistillLoss` sums them by name.

CE and Lovasz-softmax against ground truth; KL_T, the cross-sample affinity relation, FeatMSE
and CWD against teacher targets. `recipes.recipe(method)` gives the release's weights.
"""

from srkd.losses.ce import cross_entropy_loss
from srkd.losses.combined import DistillLoss, LossWeights
from srkd.losses.cwd import cwd_loss
from srkd.losses.distributed import all_gather_with_grad
from srkd.losses.feat_mse import FeatMSE
from srkd.losses.kl import kl_distill_loss
from srkd.losses.lovasz import lovasz_softmax_loss
from srkd.losses.recipes import DATASETS, METHODS, Recipe, recipe
from srkd.losses.relation import (
    relation_loss,
    sample_relation_indices,
    sampled_relation_loss,
)

__all__ = [
    "DATASETS",
    "METHODS",
    "DistillLoss",
    "FeatMSE",
    "LossWeights",
    "Recipe",
    "all_gather_with_grad",
    "cross_entropy_loss",
    "cwd_loss",
    "kl_distill_loss",
    "lovasz_softmax_loss",
    "recipe",
    "relation_loss",
    "sample_relation_indices",
    "sampled_relation_loss",
]
