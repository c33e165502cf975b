"""What every command checks before it reads a voxel, and the CLI's one-line error convention.

Outputs are validated first because a mistake there is the costly one: an output that is, contains or lies inside an
input would overwrite or delete the user's data (``-o <the PET>``, ``harmonize --input DIR -o DIR``); an unwritable
or misnamed output would fail only after minutes of inference. Cheap: no torch, no image library.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import sys
import tempfile
from pathlib import Path

from ..errors import PetCtInputError

IMAGE_OUTPUTS = (".nii.gz", ".nii", ".mha", ".nrrd")  # what write_volume writes
IMAGE_INPUTS = "NIfTI (.nii, .nii.gz), MetaImage (.mha, .mhd), NRRD (.nrrd, .nhdr), a DICOM series folder or a .zip of one"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # writes that fail for every study alike: stop, do not skip studies
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def suffix(path) -> str:
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def _resolved(path) -> Path:
    return Path(path).expanduser().resolve()  # symlinks followed: a link to the PET is the PET


def check_inputs_exist(*paths) -> None:
    for path in paths:
        if path is not None and not Path(path).expanduser().exists():
            raise PetCtInputError(path, "no such file or folder")


def check_not_over_inputs(output, inputs) -> None:
    """Refuse an output that is, contains or lies inside an input: writing it could replace or delete that input."""
    out = _resolved(output)
    for given in inputs:
        if given is None or str(given) == "":  # an empty --model is refused as such, not as the working folder
            continue
        src = _resolved(given)
        if out == src or (out.exists() and src.exists() and os.path.samefile(out, src)):
            problem = f"is the input {given}"
        elif out in src.parents:
            problem = f"contains the input {given}"
        elif src in out.parents:
            problem = f"lies inside the input {given}"
        else:
            continue
        raise PetCtInputError(output, f"{problem}: inputs are never overwritten; choose an output outside the inputs")


def _writable_ancestor(path: Path) -> None:
    """The nearest existing folder above ``path`` must accept a new file (tried for real: root ignores modes)."""
    parent = _resolved(path).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise PetCtInputError(path, f"cannot create it: {parent} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".petct-write-test-"):
            pass
    except OSError as err:
        raise PetCtInputError(path, f"cannot write into {parent} ({err.strerror or err}): choose a writable folder") from None


def check_output_file(path, *, suffixes=IMAGE_OUTPUTS, inputs=(), what: str = "output") -> None:
    """A file output: not an existing folder, a known suffix, a writable folder, away from every input."""
    if path is None:
        return
    path = Path(path).expanduser()
    if path.is_dir():
        raise PetCtInputError(path, f"is an existing folder: give the {what} a file name ending in {suffixes[0]}")
    if suffix(path) not in suffixes:
        found = f"suffix {suffix(path)!r}" if suffix(path) else "no file extension"
        raise PetCtInputError(path, f"{found}: the {what} must end in {', '.join(suffixes)}")
    check_not_over_inputs(path, inputs)
    _writable_ancestor(path)


def check_output_folder(path, *, inputs=()) -> None:
    """A folder output: not an existing file, away from every input, creatable."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise PetCtInputError(path, "exists and is not a folder: give a folder to write into")
    check_not_over_inputs(path, inputs)
    _writable_ancestor(path / "x")


def resolve_device(name: str | None) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as the machine has it; the default is the GPU when one is visible."""
    if name is not None and not _DEVICE.match(name):
        raise PetCtInputError("--device", f"unknown device {name!r}: use cpu, cuda, cuda:N or mps")
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            raise PetCtInputError("--device", f"{name} asked for, but PyTorch ({build}) sees no GPU: use --device cpu")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise PetCtInputError("--device", f"{name} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    if name == "mps" and not torch.backends.mps.is_available():
        raise PetCtInputError("--device", "mps (Apple GPU) is not available on this machine: use --device cpu")
    return name


def positive_finite(values, flag: str) -> tuple[float, ...]:
    """Voxel sizes, weights, doses: numbers a user can mistype into a flipped or empty grid."""
    import math

    values = tuple(float(v) for v in values)
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise PetCtInputError(flag, f"must be positive and finite, got {' '.join(f'{v:g}' for v in values)}")
    return values


def run_guarded(prog: str, command, *args) -> int:
    """Run ``command(*args)``; a user error is one line on stderr (exit 2), Ctrl-C one line (exit 130)."""
    try:
        return int(command(*args) or 0)
    except PetCtInputError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (Ctrl-C); no partial output was kept", file=sys.stderr)
        return 130
    except OSError as err:  # disk full, permission changed mid-run: the environment, not a bug
        if err.filename is None and err.errno not in DISK_FULL:
            raise
        where = f"{err.filename}: " if err.filename else ""
        hint = "; free some space and run again (no partial output was kept)" if err.errno in DISK_FULL else ""
        print(f"{prog}: error: {where}{err.strerror or err}{hint}", file=sys.stderr)
        return 2


def progress_wanted(quiet: bool = False) -> bool:
    """Progress bars only on a terminal: logs and pipes get the summary lines, not carriage-return noise."""
    return not quiet and sys.stderr.isatty()


def _one_line_warning(default, message, category, *args, **kwargs) -> None:
    """Our warnings (PetCtWarning) as one line, like our errors; library warnings as Python shows them."""
    from ..errors import PetCtWarning

    if issubclass(category, PetCtWarning):
        print(f"petct: warning: {message}", file=sys.stderr)
    else:
        default(message, category, *args, **kwargs)


_LIBRARY_SWITCHES = ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")


@contextlib.contextmanager
def verbosity(*, quiet: bool = False, verbose: bool = False):
    """-q: errors only (stdout and warnings silenced); default: our lines and warnings; -v: library logs too.

    Library bars (transformers, the Hub, datasets) follow the same terminal-only rule as ours. Switches are set for
    the command and restored after it, so in-process callers (tests, notebooks) keep their own settings.
    """
    import logging
    import warnings

    saved = {k: os.environ.get(k) for k in _LIBRARY_SWITCHES}
    bars = "0" if progress_wanted(quiet) else "1"
    os.environ.update(TRANSFORMERS_VERBOSITY="info" if verbose else "error", HF_HUB_DISABLE_PROGRESS_BARS=bars,
                      HF_DATASETS_DISABLE_PROGRESS_BARS=bars)
    if "transformers" in sys.modules:  # imported already (tests, notebooks): the switches above came too late
        hf_logging = sys.modules["transformers"].utils.logging
        hf_logging.set_verbosity(logging.INFO if verbose else logging.ERROR)
        hf_logging.enable_progress_bar() if bars == "0" else hf_logging.disable_progress_bar()
    if "datasets" in sys.modules and bars == "1":  # (enabling again would fight datasets' own env switch)
        sys.modules["datasets"].disable_progress_bars()
    level = logging.getLogger().level
    shown = warnings.showwarning
    logging.getLogger().setLevel(logging.INFO if verbose else logging.ERROR if quiet else logging.WARNING)
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.showwarning = functools.partial(_one_line_warning, shown)
        if quiet:
            warnings.simplefilter("ignore")
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
        try:
            yield
        finally:
            logging.getLogger().setLevel(level)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
