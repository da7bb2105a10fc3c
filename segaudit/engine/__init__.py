"""The engine: one read of every probability, then Confident Learning on compact arrays.

Modules: :mod:`~segaudit.engine.stream` (the streaming pass over a dataset's images),
:mod:`~segaudit.engine.kernels` and :mod:`~segaudit.engine.score_kernels` (the C
kernels), :mod:`~segaudit.engine.pooling` (downsampling), :mod:`~segaudit.engine.cut`
(thresholds, the exact top-m cut, the issue mask) and :mod:`~segaudit.engine.prepare`
(predictions as models write them: upsampling, normalisation).
"""
