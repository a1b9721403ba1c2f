"""Which device trains, and a plain-words doctor that says why no GPU is used."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path

import torch

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(ValueError):
    """A device that was asked for by name but is not usable here."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def pick_device(name: str = "auto") -> torch.device:
    """"auto" -> CUDA, then MPS, then CPU; a named device that is missing is an error."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise DeviceError(f"unknown device {name!r}; known: {list(DEVICES)} (or 'cuda:N')")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} asked for, but CUDA is not usable here; "
                          f"run `segstudio-cli doctor` to see why")
    if kind == "mps" and not _mps_available():
        raise DeviceError("device 'mps' asked for, but Apple's Metal backend is not available")
    return torch.device(name)


def cpu_bf16_fast() -> bool:
    """True on CPUs with AMX tiles (Intel Sapphire Rapids and later), where oneDNN runs bf16
    convolutions in hardware: a training step under bf16 autocast took 0.44x the time of fp32
    there (docs/training.md). CPUs with only AVX512-BF16 are left in fp32."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:           # an old or unusual build: stay in fp32
        return False


def describe(device: torch.device) -> str:
    """One line for the UI and the model card: 'cuda:0 (NVIDIA H100 80GB HBM3)', 'cpu (4 threads)'."""
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{idx} ({torch.cuda.get_device_name(idx)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"
    return str(device)


def _nvidia_driver() -> str | None:
    """The NVIDIA driver version when one is loaded (Linux), else None."""
    version_file = Path("/proc/driver/nvidia/version")
    if version_file.is_file():
        try:
            first = version_file.read_text().splitlines()[0]
            return first.split("Kernel Module")[-1].split()[0] if "Kernel Module" in first else first
        except (OSError, IndexError):
            return "present"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=5)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


def _nvidia_hardware() -> bool:
    """An NVIDIA PCI device is present (Linux), whether or not a driver is loaded."""
    try:
        for vendor in Path("/sys/bus/pci/devices").glob("*/vendor"):
            if vendor.read_text().strip() == "0x10de":
                cls = (vendor.parent / "class").read_text().strip()
                if cls.startswith("0x03"):       # display controller
                    return True
    except OSError:
        pass
    return False


def doctor() -> str:
    """What was found, which device `auto` uses, and if not a GPU, why and what to do."""
    lines = [f"PyTorch {torch.__version__}, Python {platform.python_version()}, "
             f"{platform.system()} {platform.machine()}"]
    chosen = pick_device("auto")
    cuda_build = torch.version.cuda
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"GPU {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, "
                         f"compute capability {p.major}.{p.minor}")
        lines.append(f"CUDA {cuda_build}; bf16 mixed precision: "
                     f"{'yes' if torch.cuda.is_bf16_supported() else 'no (fp16 is used)'}")
    elif _mps_available():
        lines.append("Apple GPU found: training uses Metal (MPS).")
    else:
        driver = _nvidia_driver()
        hardware = _nvidia_hardware()
        if platform.system() == "Darwin":
            lines.append("No GPU is used: this PyTorch cannot use the Mac's GPU (MPS needs macOS 12.3+ "
                         "on Apple silicon and an arm64 Python). What to do: install the arm64 "
                         "Python and PyTorch.")
        elif cuda_build is None:
            why = "this PyTorch is a CPU-only build (it has no CUDA support)"
            if driver or hardware:
                why += f"; an NVIDIA GPU{' with driver ' + driver if driver else ''} is present"
            lines.append(f"No GPU is used: {why}. What to do: if this computer has an NVIDIA GPU, "
                         f"install a CUDA build of PyTorch (e.g. `pip install torch` on Linux, or "
                         f"the command from pytorch.org for your driver), then run this again.")
        elif driver is None and hardware:
            lines.append(f"No GPU is used: PyTorch has CUDA {cuda_build}, an NVIDIA GPU is present, "
                         f"but no NVIDIA driver is loaded. What to do: install the NVIDIA driver "
                         f"(and reboot), then check with `nvidia-smi`.")
        elif driver is None:
            lines.append(f"No GPU is used: PyTorch has CUDA {cuda_build}, but no NVIDIA GPU or "
                         f"driver was found on this computer. Training runs on the CPU.")
        else:
            lines.append(f"No GPU is used: PyTorch has CUDA {cuda_build} and driver {driver} is "
                         f"loaded, but CUDA reports no usable device. What to do: check that the "
                         f"driver supports CUDA {cuda_build} (`nvidia-smi` shows the highest CUDA "
                         f"version it supports) and that CUDA_VISIBLE_DEVICES "
                         f"({os.environ.get('CUDA_VISIBLE_DEVICES', 'not set')}) does not hide it.")
    lines.append(f"CPU: {os.cpu_count()} logical cores, PyTorch uses {torch.get_num_threads()} "
                 f"threads; oneDNN: {'yes' if torch.backends.mkldnn.is_available() else 'no'}")
    lines.append(f"Training device (auto): {describe(chosen)}")
    return "\n".join(lines)
