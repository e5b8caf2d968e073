"""Inference: prompts, collation, encoding and catalogue ranking over a loaded model. Importing it gives the model
layer's `recommend` its implementation (see `modeling_xcross.recommending`)."""

from ..recommending import register_ranker
from .catalogue import recommend

register_ranker(recommend)
