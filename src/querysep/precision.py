"""Which floating-point precision to compute in, chosen from what the hardware does natively.

bf16 autocast pays off only where the hardware computes bf16 itself: a CUDA GPU with bf16
support, or a CPU with AVX-512 BF16 or AMX. Elsewhere PyTorch emulates bf16 on the CPU, and
that is far slower than float32. Measured on an AVX2-only CPU (issue #11): the ResUNet30
preset's forward on 2 s of audio took 88 s under bf16 autocast against 0.46 s in float32
(190x), and ``benchmarks/train_speed.py configs/default-esc50.yaml --steps 2 --skip 1`` took
282 s where float32 runs about 9 s a step. Training
(``trainer.precision: auto``) and every inference path resolve ``auto`` through
:func:`resolve_precision`, so the choice is made in one place.
"""

from __future__ import annotations

import contextlib
import functools
import numbers
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from .errors import ConfigError

__all__ = [
    "EMULATED_BF16_SLOWDOWN",
    "CpuInfo",
    "Precision",
    "PrecisionSetting",
    "autocast",
    "check_precision",
    "cpu_info",
    "describe_choice",
    "resolve_precision",
]

Precision = Literal["32", "bf16-mixed"]
PrecisionSetting = Literal["auto", "32", "bf16-mixed"]

#: Measured slowdown of bf16 autocast over float32 on a CPU without native bf16 (ResUNet30
#: forward, AVX2 CPU); quoted in the warning when bf16 is forced there.
EMULATED_BF16_SLOWDOWN = 190


@dataclass(frozen=True)
class CpuInfo:
    """What PyTorch reports about this CPU's vector units.

    Attributes:
        capability: ``torch.backends.cpu.get_cpu_capability()``, e.g. ``AVX2``, ``AVX512``.
        avx512_bf16: The CPU has AVX-512 BF16 instructions.
        amx: The CPU has AMX tiles (bf16 matrix units).
    """

    capability: str
    avx512_bf16: bool
    amx: bool

    @property
    def fast_bf16(self) -> bool:
        """bf16 is computed natively (not emulated) on this CPU.

        Needs the instructions and PyTorch's AVX-512 kernels: with the kernels held back to
        AVX2 (``ATEN_CPU_CAPABILITY=avx2``) bf16 is emulated again.
        """
        return (self.avx512_bf16 or self.amx) and self.capability.startswith("AVX512")

    def __str__(self) -> str:
        return (
            f"CPU capability {self.capability}, AVX-512 BF16 {'yes' if self.avx512_bf16 else 'no'}"
            f", AMX {'yes' if self.amx else 'no'}"
        )


def _probe(name: str) -> bool:
    probe = getattr(torch.cpu, name, None)
    try:
        return bool(probe()) if callable(probe) else False
    except Exception:  # a probe that fails on an unusual CPU means "no"
        return False


@functools.cache
def cpu_info() -> CpuInfo:
    """This CPU's capability as PyTorch sees it (cached)."""
    return CpuInfo(
        capability=str(torch.backends.cpu.get_cpu_capability()),
        avx512_bf16=_probe("_is_avx512_bf16_supported"),
        amx=_probe("_is_amx_tile_supported"),
    )


def _device_type(device: str | torch.device) -> str:
    text = str(device)
    if text in ("gpu", "cuda") or text.startswith("cuda"):
        return "cuda"
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(text).type


def _as_text(setting: object) -> object:
    """``setting`` with the whole number 32 (Lightning takes ``precision=32``) as ``"32"``."""
    if isinstance(setting, numbers.Integral) and not isinstance(setting, bool) and setting == 32:
        return "32"
    return setting


def check_precision(setting: str | int) -> None:
    """Raise :class:`ConfigError` unless ``setting`` is ``auto``, ``32`` or ``bf16-mixed``.

    The number ``32`` is taken as ``"32"``.
    """
    if _as_text(setting) not in ("auto", "32", "bf16-mixed"):
        raise ConfigError(f"precision must be auto, 32 or bf16-mixed, got {setting!r}")


def resolve_precision(setting: str | int, device: str | torch.device) -> Precision:
    """The precision to compute in on ``device``.

    Args:
        setting: ``auto``, ``32`` (the string or the number) or ``bf16-mixed``.
        device: A torch device, or a Lightning accelerator name (``cpu``, ``gpu``, ``cuda``,
            ``mps``, ``auto``).

    Returns:
        ``bf16-mixed`` for ``auto`` on a CUDA device with bf16 support or a CPU with AVX-512
        BF16 or AMX; ``32`` elsewhere. An explicit setting is returned as it is, with a
        warning when it asks for bf16 on a CPU that would emulate it.

    Raises:
        ConfigError: An unknown setting.
    """
    check_precision(setting)
    setting = str(_as_text(setting))
    chosen = _resolve(setting, _device_type(device))
    if setting == "bf16-mixed" and _device_type(device) == "cpu" and not cpu_info().fast_bf16:
        warnings.warn(
            f"bf16 was asked for on a CPU without native bf16 ({cpu_info()}): PyTorch emulates "
            f"it, measured about {EMULATED_BF16_SLOWDOWN}x slower than float32 for ResUNet30; "
            "use precision auto or 32",
            stacklevel=2,
        )
    return chosen


def _cuda_bf16() -> bool:
    """The current GPU computes bf16 natively (Ampere or newer), not by emulation."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # a torch without the argument
        return torch.cuda.get_device_capability()[0] >= 8


def _resolve(setting: str, kind: str) -> Precision:
    if setting != "auto":
        return setting  # type: ignore[return-value]
    if kind == "cuda":
        return "bf16-mixed" if _cuda_bf16() else "32"
    if kind == "cpu":
        return "bf16-mixed" if cpu_info().fast_bf16 else "32"
    return "32"


def describe_choice(setting: str, device: str | torch.device) -> str:
    """One line saying what :func:`resolve_precision` chooses and why, for logs (no warning)."""
    kind = _device_type(device)
    chosen = _resolve(setting, kind)
    why = str(cpu_info()) if kind == "cpu" else f"device {kind}"
    return f"precision {chosen} ({'auto' if setting == 'auto' else 'as configured'}; {why})"


@contextlib.contextmanager
def autocast(precision: Precision, device: torch.device) -> Iterator[None]:
    """Autocast to bf16 for ``bf16-mixed``; nothing for ``32``.

    Outputs of a bf16 region may be bf16: cast them back with ``.float()`` where needed.
    """
    if precision == "bf16-mixed":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
