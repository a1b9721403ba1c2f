import pytest
import torch

from segstudio.ml import device as dev


def test_auto_picks_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    assert dev.pick_device("auto").type == "cpu"
    with pytest.raises(dev.DeviceError, match="CUDA is not usable.*doctor"):
        dev.pick_device("cuda")
    with pytest.raises(dev.DeviceError, match="unknown device 'tpu'"):
        dev.pick_device("tpu")


@pytest.mark.parametrize("cuda_build, driver, hardware, expect", [
    (None, None, False, "CPU-only build"),
    (None, "550.54", True, "NVIDIA GPU with driver 550.54 is present"),
    ("12.4", None, True, "no NVIDIA driver is loaded"),
    ("12.4", None, False, "no NVIDIA GPU or driver was found"),
    ("12.4", "550.54", True, "CUDA reports no usable device"),
])
def test_doctor_says_why_no_gpu_and_what_to_do(monkeypatch, cuda_build, driver, hardware, expect):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "_mps_available", lambda: False)
    monkeypatch.setattr(dev.platform, "system", lambda: "Linux")
    monkeypatch.setattr(torch.version, "cuda", cuda_build)
    monkeypatch.setattr(dev, "_nvidia_driver", lambda: driver)
    monkeypatch.setattr(dev, "_nvidia_hardware", lambda: hardware)
    report = dev.doctor()
    assert expect in report
    assert "Training device (auto): cpu" in report
