"""Precision choice: bf16 only where the hardware computes it natively, decided in one place."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from querysep import Separator, precision
from querysep.errors import ConfigError
from querysep.precision import CpuInfo, autocast, describe_choice, resolve_precision

AVX2 = CpuInfo(capability="AVX2", avx512_bf16=False, amx=False)
AVX512_BF16 = CpuInfo(capability="AVX512", avx512_bf16=True, amx=False)
AMX = CpuInfo(capability="AVX512", avx512_bf16=False, amx=True)


@pytest.fixture()
def cpu(monkeypatch: pytest.MonkeyPatch):
    def use(info: CpuInfo) -> None:
        monkeypatch.setattr(precision, "cpu_info", lambda: info)

    return use


@pytest.mark.parametrize(
    ("info", "expected"), [(AVX2, "32"), (AVX512_BF16, "bf16-mixed"), (AMX, "bf16-mixed")]
)
def test_auto_on_cpu_follows_the_capability(cpu, info: CpuInfo, expected: str) -> None:
    cpu(info)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("auto", "cpu") == expected
        assert resolve_precision("auto", torch.device("cpu")) == expected
        assert resolve_precision("32", "cpu") == "32"
    line = describe_choice("auto", "cpu")
    assert (
        line.startswith(f"precision {expected} (auto;") and f"capability {info.capability}" in line
    )


def test_forcing_bf16_on_a_cpu_without_it_warns_with_the_slowdown(cpu) -> None:
    cpu(AVX2)
    with pytest.warns(UserWarning, match=r"without native bf16.*190x slower"):
        assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # describing the choice for the log does not warn again
        assert describe_choice("bf16-mixed", "cpu").startswith("precision bf16-mixed")
    cpu(AVX512_BF16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"


def test_auto_on_cuda_follows_bf16_support(cpu, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu(AVX2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", "gpu") == "bf16-mixed"
    assert resolve_precision("auto", "cuda:1") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert resolve_precision("auto", "cuda") == "32"
    # a pre-Ampere GPU emulates bf16: auto must not pick it
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation
    )
    assert resolve_precision("auto", "cuda") == "32"
    # accelerator auto without a GPU is the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto", "auto") == "32"
    assert resolve_precision("auto", "mps") == "32"


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ConfigError, match="auto, 32 or bf16-mixed"):
        resolve_precision("16", "cpu")
    for bad in (16, True, 32.5, "bf16"):
        with pytest.raises(ConfigError, match="auto, 32 or bf16-mixed"):
            resolve_precision(bad, "cpu")  # type: ignore[arg-type]


def test_the_number_32_is_the_setting_32() -> None:
    # as Lightning takes it; was "precision must be auto, 32 or bf16-mixed, got 32"
    assert resolve_precision(32, "cpu") == "32"
    assert resolve_precision(np.int64(32), "cpu") == "32"  # type: ignore[arg-type]
    sep = Separator("test-tiny", precision=32)
    assert sep.precision == "32" and not sep.channels_last


def test_the_real_cpu_is_described() -> None:
    info = precision.cpu_info()
    assert info.capability == torch.backends.cpu.get_cpu_capability()
    native = (info.avx512_bf16 or info.amx) and info.capability.startswith("AVX512")
    assert info.fast_bf16 == native


def test_kernels_held_back_to_avx2_mean_emulated_bf16(cpu) -> None:
    cpu(CpuInfo(capability="AVX2", avx512_bf16=True, amx=True))  # ATEN_CPU_CAPABILITY=avx2
    assert resolve_precision("auto", "cpu") == "32"


def test_autocast_context() -> None:
    a = torch.randn(4, 4)
    with autocast("bf16-mixed", torch.device("cpu")):
        assert (a @ a).dtype == torch.bfloat16
    with autocast("32", torch.device("cpu")):
        assert (a @ a).dtype == torch.float32


def test_separator_precision_goes_through_the_same_choice(cpu) -> None:
    audio = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    ref = Separator("test-tiny").separate_tensor(audio, 16000, "a dog")
    cpu(AVX2)
    assert Separator("test-tiny", precision="auto").precision == "32"
    cpu(AVX512_BF16)
    fast = Separator("test-tiny", precision="auto")
    assert fast.precision == "bf16-mixed"
    out = fast.separate_tensor(audio, 16000, "a dog")
    assert out.dtype == torch.float32 and out.shape == ref.shape
    err = (out - ref).abs().max() / ref.abs().max()
    assert 0 < err < 0.05  # bf16 really ran (not bit-identical), and stayed close
