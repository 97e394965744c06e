"""Oracle resynthesis rows: the best any separator in AudioLDM's latent space can do.

``oracle-ldm:OUTPUT:SOURCE`` takes the clean target (scaled by the mixture's gain, as
IRM-LDM scales both), encodes its log-mel spectrogram with the VAE of ``SOURCE``, decodes
it, and turns the decoded mel back into audio by ``OUTPUT``:

- ``vocoder``: AudioLDM's HiFi-GAN (Griffin-Lim when ``SOURCE`` has no vocoder weights; the
  row's name then says ``[griffin-lim]``);
- ``griffin-lim``: fast Griffin-Lim from the mel's magnitude;
- ``phase-preserving``: the ratio of the decoded target mel to the decoded mixture mel, as
  an STFT mask on the mixture (IRM-LDM's variant).

A latent separator that found the target's latent exactly would score this row; nothing in
the latent space scores better. ``oracle-mel:OUTPUT:SOURCE`` skips the VAE (the target's
exact mel), isolating what the output path alone costs: for ``vocoder`` and
``griffin-lim`` this is where SI-SDR far below 0 dB comes from, since neither keeps the
target's phase. ``SOURCE`` is an IRM-LDM model (``irm-ldm:DIR``, a model folder, a bundled
name), an AudioLDM folder, a folder with ``vae/`` or a bundled VAE name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["OracleResynthesis", "oracle_factory"]


class OracleResynthesis:
    """Resynthesise the target through an output path, with or without the VAE.

    Args:
        net: An :class:`~querysep.models.irm_ldm.IrmLdm` (its mask network is not used).
        output: ``vocoder``, ``griffin-lim`` or ``phase-preserving``.
        through_vae: Encode and decode the target's mel with the VAE first.
        name: Row label.
    """

    def __init__(self, net: Any, output: str, *, through_vae: bool, name: str) -> None:
        net.set_output(output)
        self.net = net
        self.output = output
        self.through_vae = through_vae
        self.name = name
        self.sample_rate: int | None = int(net.config.sample_rate)

    @torch.inference_mode()
    def separate(
        self, mixture: np.ndarray, sample_rate: int, query: str, *, target: np.ndarray | None
    ) -> np.ndarray:
        """The target, resynthesised (the query is not used).

        Raises:
            ConfigError: No target was given.

        Shape:
            - mixture, target: ``(time,)``
            - output: ``(time,)`` float32
        """
        from ..models.irm_ldm import peak_gain

        if target is None:
            raise ConfigError(f"{self.name} needs the clean target")
        net = self.net
        both = torch.from_numpy(np.stack([mixture, target]).astype(np.float32))[:, None]
        wave, length = net.prepare(both.to(net.device))
        gain = peak_gain(wave[:1], net.config.peak)  # the mixture's gain, for both
        spec = net.front.spectrogram(wave * gain)
        frames = spec.shape[1]
        if self.through_vae:
            _, latent = net.encode(spec)
            mels = net.decode(latent, frames)
        else:
            mels = net.front.log_mel(spec)
        estimate = net.synthesize(
            mels[1:], spec[:1], wave.shape[-1], mixture_mel=mels[:1], output=self.output
        )
        out = (estimate / gain)[0, :length]
        return out.float().cpu().numpy()


def oracle_factory(through_vae: bool) -> Any:
    """The factory of ``oracle-ldm`` (``through_vae``) or ``oracle-mel`` rows."""
    prefix = "oracle-ldm" if through_vae else "oracle-mel"

    def factory(argument: str, options: Any) -> OracleResynthesis:
        from ..models.irm_ldm import OUTPUTS
        from ..models.irm_ldm.loader import component_network

        output, _, source = argument.partition(":")
        if output not in OUTPUTS or not source.strip():
            raise ConfigError(
                f"{prefix} rows are {prefix}:OUTPUT:SOURCE with OUTPUT one of "
                f"{', '.join(OUTPUTS)} and SOURCE an IRM-LDM model or an AudioLDM / VAE "
                f"folder, got {prefix}:{argument}"
            )
        from ..pretrained import resolve_device

        net = component_network(source, output).to(resolve_device(options.device))
        name = f"{prefix}:{argument}"
        if net.output_label != output:
            name += f" [{net.output_label}]"
        return OracleResynthesis(net, output, through_vae=through_vae, name=name)

    return factory
