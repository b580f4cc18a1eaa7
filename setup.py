"""Build script: compiles every ``skconv/_kernels/*.pyx`` with OpenMP when the compiler has it.

Environment switches
--------------------
SKCONV_DEBUG=1
    Cython bounds, wraparound and initialisation checks on, ``-O0 -g``: for testing
    that the Python layer never hands a kernel out-of-range shapes.
SKCONV_NATIVE=1
    Adds ``-march=native`` (opt-in only: a default build must run on other CPUs).
SKCONV_NO_OPENMP=1
    Builds the serial fallback even when OpenMP is available.
SKCONV_ISA=baseline|avx2|avx512
    x86-64 only: compiles the kernels for that one instruction set (x86-64,
    x86-64-v3, x86-64-v4) instead of all three picked at load time, so that a
    machine with AVX-512 can test the code an older CPU runs. For testing; an
    avx2 or avx512 build only runs on CPUs that have those instructions.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("SKCONV_DEBUG", "0") not in ("", "0")
NATIVE = os.environ.get("SKCONV_NATIVE", "0") not in ("", "0")
NO_OPENMP = os.environ.get("SKCONV_NO_OPENMP", "0") not in ("", "0")
# -march of each forced kernel variant (see skconv/_kernels/include/common/simd.h),
# and whether it has the 32 vector registers of AVX-512 (the kernels' register
# blocking asks at run time, which would pick the AVX-512 blocking in an AVX2 build
# on an AVX-512 machine).
ISA_VARIANTS = {"baseline": ([], 0), "avx2": (["-march=x86-64-v3"], 0),
                "avx512": (["-march=x86-64-v4"], 1)}
ISA = os.environ.get("SKCONV_ISA", "")
if ISA and ISA not in ISA_VARIANTS:
    sys.exit(f"SKCONV_ISA must be one of {sorted(ISA_VARIANTS)} (or unset), got {ISA!r}")

#: The kernel layer's package: every compiled module and its C headers live there.
KERNELS = ("skconv", "_kernels")

OPENMP_TEST_PROGRAM = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d\n", n > 0 && omp_get_max_threads() > 0);
    return 0;
}
"""


def _openmp_flags(compiler):
    """Return (compile_args, link_args) if a tiny OpenMP program builds and runs.

    Compiling a test program is the only reliable check: some compilers accept
    ``-fopenmp`` but lack the runtime (Apple clang), others spell it differently.
    """
    if NO_OPENMP:
        return None
    # GCC and Clang spellings only: the kernels need GCC vector extensions (see
    # skconv/_kernels/include/common/simd.h), so MSVC cannot build them anyway.
    candidates = [(["-fopenmp"], ["-fopenmp"]), (["-Xpreprocessor", "-fopenmp"], ["-lomp"])]
    for compile_args, link_args in candidates:
        tmpdir = tempfile.mkdtemp()
        try:
            src = os.path.join(tmpdir, "test_openmp.c")
            with open(src, "w") as f:
                f.write(OPENMP_TEST_PROGRAM)
            objects = compiler.compile([src], output_dir=tmpdir, extra_postargs=compile_args)
            exe = os.path.join(tmpdir, "test_openmp")
            compiler.link_executable(objects, exe, extra_postargs=link_args)
            out = subprocess.run([exe], capture_output=True, text=True, timeout=30)
            if out.returncode == 0 and out.stdout.strip() == "1":
                return compile_args, link_args
        except Exception:  # noqa: BLE001 - any failure means "no OpenMP here"
            pass
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return None


class BuildExtWithOpenMP(build_ext):
    """Adds OpenMP flags (when they work) and records the build's settings in
    ``skconv/_kernels/build_config.py``."""

    def build_extensions(self):
        flags = _openmp_flags(self.compiler)
        with_openmp = flags is not None
        if not with_openmp:
            print("skconv: OpenMP not available, building serial kernels", file=sys.stderr)
        for ext in self.extensions:
            if with_openmp:
                ext.extra_compile_args += flags[0]
                ext.extra_link_args += flags[1]
        config = os.path.join(self.build_lib, *KERNELS, "build_config.py")
        os.makedirs(os.path.dirname(config), exist_ok=True)
        contents = f"OPENMP = {with_openmp!r}\nDEBUG = {DEBUG!r}\nISA = {ISA or None!r}\n"
        for path in {config, os.path.join(*KERNELS, "build_config.py")}:
            with open(path, "w") as f:
                f.write(contents)
        super().build_extensions()


def _extensions():
    from Cython.Build import cythonize

    if DEBUG:
        compile_args = ["-O0", "-g"]
    else:
        compile_args = ["-O3"]
    # sqrt never sets errno then, so it vectorises (the optimizer step takes square
    # roots); the results are the same, correctly rounded, values.
    compile_args.append("-fno-math-errno")
    if NATIVE:
        compile_args.append("-march=native")
    define_macros = [("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")]
    if ISA:
        march, registers_32 = ISA_VARIANTS[ISA]
        compile_args += march
        define_macros += [("SKCONV_NO_CLONES", "1"),
                          ("SKCONV_32_VECTOR_REGISTERS", str(registers_32))]
    extensions = [
        Extension(
            ".".join(KERNELS) + "." + os.path.splitext(os.path.basename(path))[0],
            [path],
            include_dirs=[np.get_include(), os.path.join(*KERNELS, "include")],
            define_macros=list(define_macros),
            extra_compile_args=list(compile_args),
            extra_link_args=[],
        )
        for path in sorted(glob.glob(os.path.join(*KERNELS, "*.pyx")))
    ]
    directives = {
        "language_level": 3,
        "boundscheck": DEBUG,
        "wraparound": DEBUG,
        "initializedcheck": DEBUG,
        "nonecheck": DEBUG,
        "cdivision": not DEBUG,
        "cpow": True,
        "embedsignature": True,
    }
    return cythonize(
        extensions,
        compiler_directives=directives,
        # Rebuild when the debug switch flips: the generated C differs.
        force=DEBUG or os.environ.get("SKCONV_FORCE_CYTHON", "0") != "0",
        nthreads=0,
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExtWithOpenMP})
