"""Build of segaudit's compiled kernels; everything else is in pyproject.toml."""

from setuptools import Extension, setup

COMPILE_ARGS = [
    "-O3",
    "-std=c11",
    "-Wall",
    "-Wextra",
    # Let float loops vectorise and contract to FMA; NaN and infinity keep their meaning
    # (no -ffast-math: the kernels detect them).
    "-fno-math-errno",
    "-fno-trapping-math",
    "-ffp-contract=fast",
    # '#pragma omp simd' reductions (the softmin's sums) without the OpenMP runtime.
    "-fopenmp-simd",
]

setup(
    ext_modules=[
        Extension(
            "segaudit.engine._ckernels",
            sources=["segaudit/engine/_kernels.c", "segaudit/engine/_regions.c"],
            extra_compile_args=COMPILE_ARGS,
        )
    ]
)
