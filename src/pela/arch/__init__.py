"""Everything pela knows about particular architectures, in one place a user can extend.

* `registry`: which modules are linear layers (`register_linear_like`; GPT-2's `Conv1D` is one),
which
  stay dense by default (`DEFAULT_EXCLUDE`, `add_default_exclusion`), and which must never be
  swapped.
* `blocks`: the Transformer blocks whose outputs feature distillation matches (`find_blocks`).
* `inputs`: example inputs, an encoder-decoder's decoder inputs, each block's attention mask.
* `outputs`: calling a model on a batch and reading its outputs (a language model's key-value
  cache under the name its transformers version uses).
* `towers`: two-tower models (CLIP, SigLIP) run, distilled and classified with the tower their data
feeds.
* `properties`: hidden width, class names, the longest input and whether it is a language model, as
a
  model's config says them.
* `classifier`, `heads`: a classification head for any model (its own, resized, or a pooled one).

The core (`pela.compression`, `pela.training`) calls only these functions and has no
per-architecture branches.
"""

from pela.arch.blocks import find_blocks
from pela.arch.classifier import SequenceClassifier
from pela.arch.heads import with_classifier
from pela.arch.inputs import (
    accepted_inputs,
    block_masks,
    built_image_size,
    example_inputs,
    input_kinds,
    model_inputs,
    with_decoder_inputs,
)
from pela.arch.outputs import (
    block_output,
    cache_argument,
    call_with_inputs,
    forward,
    last_logits_argument,
    main_output,
    output_tensors,
    returned_cache,
    vocabulary_head,
)
from pela.arch.properties import class_names, hidden_size, is_causal_lm, max_positions
from pela.arch.registry import (
    DEFAULT_EXCLUDE,
    LINEAR_LIKE,
    add_default_exclusion,
    default_exclusion_reason,
    linear_weight,
    register_linear_like,
    structural_skip,
)
from pela.arch.towers import TOWERS, TowerView, data_tower, tower_for, two_tower

__all__ = [
    "DEFAULT_EXCLUDE",
    "LINEAR_LIKE",
    "TOWERS",
    "SequenceClassifier",
    "TowerView",
    "accepted_inputs",
    "add_default_exclusion",
    "block_masks",
    "input_kinds",
    "model_inputs",
    "block_output",
    "built_image_size",
    "cache_argument",
    "call_with_inputs",
    "class_names",
    "data_tower",
    "default_exclusion_reason",
    "example_inputs",
    "find_blocks",
    "forward",
    "hidden_size",
    "is_causal_lm",
    "last_logits_argument",
    "linear_weight",
    "main_output",
    "max_positions",
    "output_tensors",
    "register_linear_like",
    "returned_cache",
    "structural_skip",
    "tower_for",
    "two_tower",
    "vocabulary_head",
    "with_classifier",
    "with_decoder_inputs",
]
