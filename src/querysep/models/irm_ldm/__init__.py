"""IRM-LDM (System 3 of the DCASE 2024 T9 report): ratio masking in AudioLDM's latent space.

Importing this package needs torch only; diffusers (the ``gen`` extra) is imported when a
model is built. See ``docs/system3-irm-ldm.md``.
"""

from ..separator import register_network
from .components import LdmFolder, require_diffusers
from .loader import NETWORK_TYPE, load_irm_ldm, split_output
from .masknet import LatentMaskNet
from .mel import MelFrontEnd, peak_gain
from .model import OUTPUTS, IrmLdm, IrmLdmConfig, resolve_ldm

__all__ = [
    "NETWORK_TYPE",
    "OUTPUTS",
    "IrmLdm",
    "IrmLdmConfig",
    "LatentMaskNet",
    "LdmFolder",
    "MelFrontEnd",
    "load_irm_ldm",
    "peak_gain",
    "require_diffusers",
    "resolve_ldm",
    "split_output",
]

register_network(NETWORK_TYPE, IrmLdmConfig.from_dict, IrmLdm)
