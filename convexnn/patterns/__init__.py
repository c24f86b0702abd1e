"""Layer ①, data → activation patterns: sampled gates (:mod:`.sampling`), the dual-violation
search that grows them (:mod:`.search`), exact enumeration of a hyperplane arrangement
(:mod:`.arrangements`) and the patch patterns of convolutions (:mod:`.patches`).

No model knowledge: a new way to choose patterns goes here and returns a :class:`PatternSet`."""

from .arrangements import (
    DEFAULT_MAX_PATTERNS,
    ArrangementTooLarge,
    arrangement_rank,
    count_patterns,
    enumerate_patterns,
)
from .patches import (
    MAX_POOL_SOURCE,
    POOLINGS,
    PoolingWindows,
    conv_output_shape,
    enumerate_max_pool_patterns,
    enumerate_patch_patterns,
    extract_patches,
    iter_patch_chunks,
    patch_masks,
    pooling_windows,
    sample_patch_gates,
    stacked_patches,
)
from .sampling import (
    DEFAULT_CHUNK,
    PatternSet,
    bool_masks,
    deduplicate_gates,
    mask_hashes,
    pattern_masks,
    sample_gates,
)
from .search import search_gates

__all__ = [
    "PatternSet", "sample_gates", "pattern_masks", "bool_masks", "mask_hashes",
    "deduplicate_gates", "search_gates",
    "DEFAULT_CHUNK", "enumerate_patterns", "count_patterns", "arrangement_rank",
    "ArrangementTooLarge", "DEFAULT_MAX_PATTERNS", "extract_patches", "iter_patch_chunks",
    "conv_output_shape", "PoolingWindows", "pooling_windows", "stacked_patches",
    "sample_patch_gates", "enumerate_patch_patterns", "enumerate_max_pool_patterns",
    "patch_masks", "POOLINGS", "MAX_POOL_SOURCE",
]
