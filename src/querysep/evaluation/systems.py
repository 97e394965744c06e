"""Systems: the rows of an evaluation table, each turning (mixture, query) into an estimate.

A system is anything with a ``name``, a ``sample_rate`` and a ``separate`` method (the
:class:`System` protocol). Systems are built from short text specs through a registry, so
the command line and :func:`~querysep.evaluation.evaluate` accept strings:

* ``mixture``: no separation, the estimate is the mixture (the "Mixture" row: SDRi = 0);
* ``reference``: the clean target (only its ATS is scored: what a perfect output gets);
* ``oracle-irm`` / ``oracle-irm:MODEL``: the ideal ratio mask computed from the references
  with the STFT of ``MODEL`` (default :data:`~querysep.pretrained.DEFAULT_MODEL`), the
  ceiling of mask-based separation;
* ``oracle-ldm:OUTPUT:SOURCE`` / ``oracle-mel:OUTPUT:SOURCE``: the clean target through
  AudioLDM's VAE (or its exact mel) and back to audio by an IRM-LDM output path, the
  ceiling of latent separators (:mod:`querysep.evaluation.resynthesis`);
* ``model:SPEC`` or any other spec :func:`~querysep.load_model` accepts (a name, a folder,
  ``kind:path``): a trained separator through :class:`~querysep.Separator`. A network with
  a ``row_label`` (IRM-LDM's output path) has it added to the row's name.
* ``normalized:SPEC``: the same model with ``Separator(normalize=True)`` (each segment
  scaled to peak 0.9 for the network, the estimate scaled back), in the row
  ``SPEC [normalized]``, so that it sits beside the plain ``SPEC`` row in one table.
* ``unsnapped:SPEC``: a model that answers each query as the nearest of its training texts
  (:class:`~querysep.models.text.NearestTextEncoder`), run with
  ``Separator(snap_queries=False)``: each query embedded as it is, in the row
  ``SPEC [unsnapped]``.

New kinds of system (a 32 kHz AudioSep run through 16->32->16 kHz resampling, a latent
IRM-LDM, ...) plug in with :func:`register_system` and need no change to the runner.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..audio.io import resample
from ..data.mixing import fit_length
from ..errors import AudioError, ConfigError
from ..models.text import plain_encoder
from .resynthesis import oracle_factory

__all__ = [
    "MixtureSystem",
    "ModelSystem",
    "OracleIRM",
    "ReferenceSystem",
    "System",
    "SystemFactory",
    "SystemOptions",
    "make_system",
    "register_system",
    "registered_systems",
    "run_system",
]


@runtime_checkable
class System(Protocol):
    """One row of an evaluation table.

    Attributes:
        name: Label of the row in the table and of the ``system`` column of the CSV.
        sample_rate: Rate the system works at. The runner resamples the mixture (and the
            target) to it and the estimate back to the evaluation rate; ``None`` means the
            system works at any rate and gets the evaluation-rate audio untouched.

    Optionally, ``settings``: a mapping of what its output depends on beyond its name (a
    model's segment length, overlap, precision and the digest of its files), recorded in the
    output folder's ``settings.json``; a later run whose system of that name has other
    settings is refused. And ``spec``: the text it was built from (:func:`make_system` sets
    it), also recorded there, so that a later run can build the row again (to add a new
    metric column to its rows) even when its name is not a spec (``NAME [label]``).
    """

    name: str
    sample_rate: int | None

    def separate(
        self, mixture: np.ndarray, sample_rate: int, query: str, *, target: np.ndarray | None
    ) -> np.ndarray:
        """Estimate the sound ``query`` describes.

        Args:
            mixture: The mono mixture.
            sample_rate: Its rate in Hz.
            query: The caption of the target.
            target: The clean target, for oracle systems only (others must ignore it). The
                interference is ``mixture - target``.

        Returns:
            The estimate, same length as ``mixture``.

        Shape:
            - mixture, target: ``(time,)``
            - output: ``(time,)``
        """
        ...


@dataclass(frozen=True)
class SystemOptions:
    """Settings shared by every system a run builds.

    Attributes:
        device: Where models run (``cpu``, ``cuda``, ``mps``, ``auto``).
        segment_seconds: Segment length for model inference.
        batch_size: Most items run through a network at once.
        precision: ``32``, ``bf16-mixed``, ``auto`` or ``None`` (each model's default:
            ``auto`` for upstream checkpoints, ``32`` otherwise) for model inference (see
            :class:`~querysep.Separator`).
    """

    device: str = "cpu"
    segment_seconds: float = 10.0
    batch_size: int = 8
    precision: str | None = None


#: The label a ``normalized:SPEC`` row's name ends with: ``SPEC [normalized]``.
NORMALIZED_LABEL = "normalized"
#: The label an ``unsnapped:SPEC`` row's name ends with: ``SPEC [unsnapped]``.
UNSNAPPED_LABEL = "unsnapped"

SystemFactory = Callable[[str, SystemOptions], System]
"""``factory(argument, options) -> System``; ``argument`` is what follows ``prefix:`` in the
spec (an empty string for the bare prefix)."""

_REGISTRY: dict[str, SystemFactory] = {}


def register_system(prefix: str, factory: SystemFactory) -> None:
    """Make specs ``prefix`` and ``prefix:ARG`` build systems through ``factory``.

    Args:
        prefix: The spec's name part, without ``:``.
        factory: Called as ``factory(ARG, options)`` (``ARG`` is ``""`` for a bare prefix).
    """
    if not prefix or ":" in prefix:
        raise ValueError(f"a system prefix must be non-empty and without ':', got {prefix!r}")
    _REGISTRY[prefix] = factory


def registered_systems() -> list[str]:
    """The registered prefixes, sorted."""
    return sorted(_REGISTRY)


def make_system(spec: str | System, options: SystemOptions | None = None) -> System:
    """Build the system a spec names (a :class:`System` is returned unchanged).

    A registered prefix (``spec == prefix`` or ``spec`` starting with ``prefix:``) wins;
    anything else is treated as a model spec for :func:`~querysep.load_model`. The system's
    ``spec`` attribute is set to ``spec`` (stripped) unless its factory set one.

    Raises:
        ConfigError: The spec is empty.
        ModelNotFoundError: A model spec resolves to nothing.
    """
    if not isinstance(spec, str):
        return spec
    options = options or SystemOptions()
    spec = spec.strip()
    if not spec:
        raise ConfigError("an empty system name was given")
    from ..pretrained import absolute_spec

    prefix, _, argument = spec.partition(":")
    if prefix in _REGISTRY:
        system = _REGISTRY[prefix](argument, options)
        recorded = f"{prefix}:{absolute_spec(argument)}" if argument else spec
    else:
        system = ModelSystem(spec, options=options)
        recorded = absolute_spec(spec)  # rebuilt from any working directory
    if not isinstance(getattr(system, "spec", None), str):
        with contextlib.suppress(AttributeError):  # a frozen or slotted custom system
            system.spec = recorded  # type: ignore[attr-defined]
    return system


# ------------------------------------------------------------------------------ built-ins


class MixtureSystem:
    """No separation: the estimate is the mixture itself (SDRi is exactly 0)."""

    sample_rate: int | None = None

    def __init__(self, name: str = "mixture") -> None:
        self.name = name

    def separate(
        self, mixture: np.ndarray, sample_rate: int, query: str, *, target: np.ndarray | None
    ) -> np.ndarray:
        """Return ``mixture`` unchanged.

        Shape:
            - mixture: ``(time,)``
            - output: ``(time,)``
        """
        return mixture


class ReferenceSystem:
    """The clean target itself, scored like an output: the ``reference`` row.

    Only reference-free metrics (ATS) mean something for it; the runner leaves its SDR,
    SDRi and SI-SDR empty. Its ATS is what a perfect separation would score.
    """

    sample_rate: int | None = None
    is_reference = True

    def __init__(self, name: str = "reference") -> None:
        self.name = name

    def separate(
        self, mixture: np.ndarray, sample_rate: int, query: str, *, target: np.ndarray | None
    ) -> np.ndarray:
        """Return ``target``.

        Raises:
            ConfigError: No target was given.

        Shape:
            - target: ``(time,)``
            - output: ``(time,)``
        """
        if target is None:
            raise ConfigError("the reference row needs the clean target")
        return target


class OracleIRM:
    """Ideal ratio mask: the best a real-valued time-frequency mask can do.

    With ``S`` the STFT of the target, ``N`` that of the interference ``mixture - target``
    and ``X = S + N`` that of the mixture, the mask is the standard (power-ratio, square
    root) IRM ``M = sqrt(|S|^2 / (|S|^2 + |N|^2))`` (0 where both are 0), and the estimate is
    the inverse STFT of ``M * X``, i.e. the mask applied with the mixture's phase. It uses the
    STFT settings of a separation model (periodic Hann window, centred frames), so it is the
    ceiling of mask-based separation with that front end.

    Args:
        n_fft: FFT size (and window length).
        hop_length: Hop between frames in samples.
        sample_rate: Rate the STFT settings belong to (audio is resampled to it), or
            ``None`` to apply them at whatever rate the audio has.
        name: Row label.
    """

    def __init__(
        self,
        n_fft: int = 1024,
        hop_length: int = 160,
        *,
        sample_rate: int | None = None,
        name: str = "oracle-irm",
    ) -> None:
        from ..models.stft import STFT

        if n_fft < 2 or not 1 <= hop_length <= n_fft // 2:
            raise ConfigError(
                f"oracle-irm needs n_fft >= 2 and 1 <= hop <= n_fft / 2, got {n_fft}/{hop_length}"
            )
        self.stft = STFT(n_fft, hop_length)
        self.sample_rate = sample_rate
        self.name = name

    @classmethod
    def from_model(cls, spec: str | None = None, *, name: str = "oracle-irm") -> OracleIRM:
        """Use the STFT settings (and rate) of a model (``None`` = the default model).

        Raises:
            ModelNotFoundError: ``spec`` resolves to nothing.
            ConfigError: The model has no STFT front end to copy.
        """
        from ..pretrained import load_model, network_config

        config = network_config(spec)  # a config.json is enough: no weights, no text encoder
        if config is not None:
            n_fft, hop, rate = (config.get(k) for k in ("n_fft", "hop_length", "sample_rate"))
        else:
            model = load_model(spec, "cpu")
            stft = getattr(model.net, "stft", None)
            n_fft = getattr(stft, "n_fft", None) or getattr(model.net.config, "n_fft", None)
            hop = getattr(stft, "hop_length", None) or getattr(model.net.config, "hop_length", None)
            rate = model.sample_rate
        if not n_fft or not hop or not rate:
            raise ConfigError(f"model {spec or 'default'} has no STFT settings for oracle-irm")
        return cls(int(n_fft), int(hop), sample_rate=int(rate), name=name)

    def mask(self, target: torch.Tensor, interference: torch.Tensor) -> torch.Tensor:
        """The ideal ratio mask.

        Shape:
            - target, interference: ``(..., time)``
            - output: ``(..., frames, bins)``, values in ``[0, 1]``
        """
        s_pow = self.stft(target).abs().square()
        n_pow = self.stft(interference).abs().square()
        total = s_pow + n_pow
        return torch.where(total > 0, torch.sqrt(s_pow / total.clamp_min(1e-30)), 0.0)

    @torch.inference_mode()
    def separate(
        self, mixture: np.ndarray, sample_rate: int, query: str, *, target: np.ndarray | None
    ) -> np.ndarray:
        """Mask the mixture with the IRM of ``target`` (the query is not used).

        Raises:
            ConfigError: No target was given.

        Shape:
            - mixture, target: ``(time,)``
            - output: ``(time,)`` float32
        """
        if target is None:
            raise ConfigError("oracle-irm needs the clean target")
        length = mixture.shape[-1]
        # Reflect padding needs more than n_fft / 2 samples: zero-pad very short clips.
        padded = max(length, self.stft.n_fft // 2 + 1)
        mix = torch.zeros(padded)
        tgt = torch.zeros(padded)
        mix[:length] = torch.from_numpy(np.asarray(mixture, dtype=np.float32))
        tgt[:length] = torch.from_numpy(np.asarray(target, dtype=np.float32))
        mask = self.mask(tgt, mix - tgt)
        estimate = self.stft.inverse(mask * self.stft(mix), padded)
        return estimate[:length].numpy().astype(np.float32)


class ModelSystem:
    """A trained separator, run through :class:`~querysep.Separator`.

    Args:
        spec: Anything :func:`~querysep.load_model` accepts (``None`` = the default model).
        name: Row label; defaults to ``spec``, or the model's metadata name without one,
            followed by `` [normalized]`` with ``normalize``.
        options: Device, segment length and batch size.
        normalize: Run the model with ``Separator(normalize=True)``: each segment scaled to
            peak 0.9 for the network, the estimate scaled back (the ``normalized:`` rows).
        snap_queries: ``False`` runs it with ``Separator(snap_queries=False)`` (the
            ``unsnapped:`` rows).
    """

    def __init__(
        self,
        spec: str | None = None,
        *,
        name: str | None = None,
        options: SystemOptions | None = None,
        normalize: bool = False,
        snap_queries: bool = True,
    ) -> None:
        from ..api import Separator
        from ..pretrained import DEFAULT_MODEL

        options = options or SystemOptions()
        self.separator = Separator(
            spec,
            device=options.device,
            segment_seconds=options.segment_seconds,
            overlap_seconds=min(1.0, options.segment_seconds / 2),
            batch_size=options.batch_size,
            precision=options.precision,
            normalize=normalize,
            snap_queries=snap_queries,
        )
        meta_name = self.separator.model.metadata.get("name")
        self.name = name or spec or str(meta_name or DEFAULT_MODEL)
        label = getattr(self.separator.model.net, "row_label", None)
        if name is None and isinstance(label, str) and not self.name.endswith(f"@{label}"):
            self.name += f" [{label}]"  # e.g. which output path an IRM-LDM row used
        if self.separator.normalize:
            if name is None:
                self.name += f" [{NORMALIZED_LABEL}]"
            if spec is not None:  # what rebuilds this row (an upgrade adding ATS)
                from ..pretrained import absolute_spec

                self.spec = f"normalized:{absolute_spec(spec)}"
        if not snap_queries:
            encoder = self.separator.model.text_encoder
            if plain_encoder(encoder) is encoder:
                raise ConfigError(
                    f"system 'unsnapped:{spec}': that model answers queries as they are "
                    "already (it has no bank of training texts); evaluate it as plain "
                    f"{spec}"
                )
            if name is None:
                self.name += f" [{UNSNAPPED_LABEL}]"
            if spec is not None:
                from ..pretrained import absolute_spec

                self.spec = f"unsnapped:{absolute_spec(spec)}"
        self.sample_rate: int | None = self.separator.sample_rate
        digest = self.separator.model.weights_digest()  # while the files are fresh in cache
        self.weights_sha256: str | None = digest[:16] if digest else None

    @property
    def settings(self) -> dict[str, object]:
        """What its scores depend on beyond the spec: segment length, overlap, precision,
        the SHA-256 (16 hex digits) of the files the model was loaded from (weights and
        config; none for ``test-tiny``), so a model changed under the same name is caught,
        and ``normalize: True`` for a normalized row (a plain row's settings leave it out,
        as they did before the option existed, so older folders still resume); a model
        that answers queries with its nearest training texts records them as
        ``query_bank`` (their SHA-256), which ``snap_queries=False`` leaves out."""
        sep = self.separator
        settings: dict[str, object] = {
            "segment_seconds": sep.segment_seconds,
            "overlap_seconds": sep.overlap_seconds,
            "precision": sep.precision,
        }
        if self.weights_sha256:
            settings["weights_sha256"] = self.weights_sha256
        if sep.normalize:
            settings["normalize"] = True
        if sep.query_bank is not None:
            # the texts decide every query's condition: another bank scores other figures
            settings["query_bank"] = sep.query_bank.texts_sha256[:16]
        return settings

    @property
    def is_test_model(self) -> bool:
        """Whether this is the reserved random-weight ``test-tiny`` model."""
        from ..pretrained import TEST_TINY

        return self.separator.model.metadata.get("name") == TEST_TINY

    def separate(
        self, mixture: np.ndarray, sample_rate: int, query: str, *, target: np.ndarray | None
    ) -> np.ndarray:
        """Separate ``query`` from ``mixture`` (the target is ignored).

        Shape:
            - mixture: ``(time,)``
            - output: ``(time,)`` float32
        """
        estimate = self.separator.separate_tensor(mixture, sample_rate, query)  # (1, 1, time)
        return estimate[0, 0].numpy().astype(np.float32, copy=False)


def run_system(
    system: System,
    mixture: np.ndarray,
    target: np.ndarray,
    query: str,
    sample_rate: int,
    cache: dict[int, tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Run one system at its own rate; the estimate comes back at ``sample_rate``.

    Args:
        system: The system.
        mixture: The mixture at ``sample_rate``.
        target: The clean target at ``sample_rate`` (for oracle and reference rows).
        query: The caption.
        sample_rate: The evaluation rate.
        cache: ``rate -> (mixture, target)`` resampled copies, shared by the systems that
            run on one clip.

    Raises:
        AudioError: The estimate holds NaN or infinite samples.

    Shape:
        - mixture, target: ``(time,)``
        - output: ``(time,)`` float32
    """
    rate = system.sample_rate or sample_rate
    if rate not in cache:
        cache[rate] = (resample(mixture, sample_rate, rate), resample(target, sample_rate, rate))
    mix_r, tgt_r = cache[rate]
    estimate = np.asarray(system.separate(mix_r, rate, query, target=tgt_r), dtype=np.float32)
    if estimate.size != mix_r.shape[-1]:
        raise ValueError(
            f"system {system.name} returned shape {estimate.shape} for a mixture of {mix_r.shape}"
        )
    estimate = estimate.reshape(-1)
    if not np.isfinite(estimate).all():  # a NaN would drop out of the means unnoticed
        raise AudioError(f"system {system.name} returned NaN or infinite samples")
    if rate != sample_rate:
        estimate = fit_length(resample(estimate, rate, sample_rate), mixture.shape[-1])
    return estimate


def _mixture_factory(argument: str, options: SystemOptions) -> System:
    if argument:
        raise ConfigError(f"system 'mixture' takes no argument, got 'mixture:{argument}'")
    return MixtureSystem()


def _reference_factory(argument: str, options: SystemOptions) -> System:
    if argument:
        raise ConfigError(f"system 'reference' takes no argument, got 'reference:{argument}'")
    return ReferenceSystem()


def _oracle_factory(argument: str, options: SystemOptions) -> System:
    name = f"oracle-irm:{argument}" if argument else "oracle-irm"
    return OracleIRM.from_model(argument or None, name=name)


def _model_factory(argument: str, options: SystemOptions) -> System:
    if not argument:
        raise ConfigError("system 'model:' needs a model after the colon, e.g. model:test-tiny")
    return ModelSystem(argument, options=options)


def _row_model(prefix: str, argument: str, why: str = "") -> str:
    """The separator model a ``prefix:MODEL`` row names (``normalized:``, ``unsnapped:``),
    checked: present, not written ``model:X``, not another row."""
    if not argument:
        raise ConfigError(
            f"system '{prefix}:' needs a model after the colon, e.g. {prefix}:esc50-minilm"
        )
    inner, _, rest = argument.partition(":")
    if inner == "model" and rest:
        raise ConfigError(
            f"system '{prefix}:{argument}': write {prefix}:{rest} "
            f"({prefix}: takes what model: takes)"
        )
    if inner in _REGISTRY:
        raise ConfigError(
            f"system '{prefix}:{argument}': {prefix}: takes a separator model (a name, "
            f"folder or kind:path), not the row {argument!r}{why}"
        )
    return argument


def _normalized_factory(argument: str, options: SystemOptions) -> System:
    why = "; only a network's input level can be normalized"
    return ModelSystem(_row_model("normalized", argument, why), options=options, normalize=True)


def _unsnapped_factory(argument: str, options: SystemOptions) -> System:
    return ModelSystem(_row_model("unsnapped", argument), options=options, snap_queries=False)


register_system("mixture", _mixture_factory)
register_system("oracle-ldm", oracle_factory(True))
register_system("oracle-mel", oracle_factory(False))
register_system("oracle-irm", _oracle_factory)
register_system("reference", _reference_factory)
register_system("model", _model_factory)
register_system("normalized", _normalized_factory)
register_system("unsnapped", _unsnapped_factory)
