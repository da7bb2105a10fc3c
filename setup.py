"""Build of segaudit's compiled kernels; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "segaudit._ckernels",
            sources=["segaudit/_kernels.c"],
            extra_compile_args=["-O3", "-std=c11", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast", "-fopenmp-simd", "-Wall", "-Wextra"],
        )
    ]
)
