"""Training data: sources (embedded photos, folders, paired folders, TFDS) and a
deterministic patch sampler whose state is just (seed, step)."""

from bppjax.data.embedded import TRAIN_NAMES, VAL_NAMES, load_embedded
from bppjax.data.pairs import ImagePair, sr_pairs
from bppjax.data.paired_folder import match_pairs
from bppjax.data.pipeline import SOURCES, build_sampler, build_val, check_source, describe, load_pairs, source_config
from bppjax.data.sampler import PatchSampler, dihedral, local_slice

__all__ = [
    "SOURCES", "TRAIN_NAMES", "VAL_NAMES", "ImagePair", "PatchSampler", "build_sampler", "build_val", "check_source",
    "describe", "dihedral", "load_embedded", "load_pairs", "local_slice", "match_pairs", "source_config", "sr_pairs",
]
