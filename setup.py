"""Build of lmzip's native runtime (lmzip.native._native): C++17 and pybind11, from source.

Everything else is declared in pyproject.toml. The extension is optional: if it cannot be built
here (no compiler, an unusual platform), the install still succeeds with one warning, and lmzip
runs on its torch reference runtime instead.
"""

from __future__ import annotations

import sys
from glob import glob

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

# Exactness: no fused multiply-add contraction and no fast-math anywhere (the float64 steps must
# be the reference's IEEE operations in the reference's order); SIMD kernels are chosen at run
# time from per-function target attributes, so the baseline flags stay portable.
if sys.platform == "win32":
    FLAGS = ["/O2", "/fp:precise", "/std:c++17"]
else:
    FLAGS = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-fno-strict-aliasing"]


class OptionalBuildExt(build_ext):
    """A failed native build is a warning, not a failed install (the reference runtime remains)."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler or platform failure
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._warn(exc)

    @staticmethod
    def _warn(exc):
        print(f"WARNING: lmzip's native runtime was not built ({exc}); lmzip will use its slower "
              "reference runtime (needs torch)", file=sys.stderr)


ParallelCompile("LMZIP_BUILD_JOBS", default=0).install()  # all CPUs: the kernels take a while

setup(
    ext_modules=[
        Pybind11Extension(
            "lmzip.native._native",
            sorted(glob("lmzip/native/csrc/*.cpp")),
            depends=sorted(glob("lmzip/native/csrc/*.h")),  # a changed header rebuilds every source
            cxx_std=17,
            extra_compile_args=FLAGS,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
