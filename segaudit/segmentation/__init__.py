"""A drop-in for ``cleanlab.segmentation`` (2.9) on segaudit's streaming engine.

Switching is replacing ``cleanlab`` by ``segaudit`` in the import lines::

    from segaudit.segmentation.filter import find_label_issues
    from segaudit.segmentation.rank import get_label_quality_scores, issues_from_scores
    from segaudit.segmentation.summary import (
        common_label_issues, display_issues, filter_by_class,
    )

The modules ``filter``, ``rank`` and ``summary`` expose cleanlab's public functions
with its signatures, defaults, return types and dtypes, exception types and messages,
and printing (``verbose=True`` by default: cleanlab's lines on stdout, its tqdm bars
on stderr). The layer only adapts arguments and results: Confident Learning, the
softmin and the swap counts are segaudit's engine and report code, which read the
arrays (numpy, ``np.load(..., mmap_mode="r")`` maps, Zarr) image batch by image
batch and keep a few bytes a pixel.

It takes what cleanlab takes where segaudit's own API (:mod:`segaudit.api`, the
command line) is stricter, and keeps cleanlab's quirks where they change a result:

- rows of ``pred_probs`` are taken as they are, whatever they sum to;
- ``downsample`` pools labels by their rounded mean (``label_pooling="mean"``; the
  keyword ``label_pooling="mode"`` is an extension);
- class thresholds are rounded as cleanlab rounds them (``np.mean`` per batch of
  images in the input's precision), so the issue count is cleanlab's also for float16;
- softmin pixel scores are float64, ``num_pixel_issues`` pixel scores keep
  pred_probs' dtype;
- ``issues_from_scores`` raises cleanlab's errors (a ``None`` threshold is a
  ``TypeError``); ``common_label_issues``' ``exclude`` drops only issue pixels whose
  *predicted* class is excluded, and ``display_issues``' only those whose *given*
  class is.

What remains different: among pixels tied at the cut, segaudit takes the lowest flat
indices (cleanlab takes whatever its unstable argsort puts first); input cleanlab
would compute garbage on (NaN or negative probabilities, labels outside 0..K-1,
softmin scores above 1) is a ``ValueError`` naming the pixel; ``n_jobs`` workers are
threads; read-only memory maps have their pages dropped once read, so resident
memory stays flat; class colours are segaudit's. Full table: the README.
"""

from segaudit.segmentation import filter, rank, summary

__all__ = ["filter", "rank", "summary"]
