"""``irm-ldm:DIR[@OUTPUT]``: load a trained IRM-LDM model folder as a separator.

A folder written by ``querysep train`` with an ``irm-ldm`` network holds the mask network
(``model.safetensors``) and a ``config.json`` that names the AudioLDM folder (or the mel
VAE) it was trained on; that folder must be at hand. ``@vocoder``, ``@griffin-lim`` or
``@phase-preserving`` after the folder picks the output path instead of the one it was
trained with, so one trained mask network can be evaluated both ways.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ...errors import ConfigError, ModelNotFoundError
from ..separator import CONFIG_NAME, TextQueriedSeparator
from .components import require_diffusers
from .model import OUTPUTS, IrmLdm, IrmLdmConfig, resolve_ldm

__all__ = ["NETWORK_TYPE", "component_network", "load_irm_ldm", "split_output"]

#: The network type of IRM-LDM models in ``config.json``.
NETWORK_TYPE = "irm-ldm"


def split_output(spec: str) -> tuple[str, str | None]:
    """``"DIR@vocoder"`` -> ``("DIR", "vocoder")``; a spec without a known output is kept."""
    head, sep, tail = spec.rpartition("@")
    if sep and tail in OUTPUTS:
        return head, tail
    return spec, None


def load_irm_ldm(
    spec: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> TextQueriedSeparator:
    """A trained IRM-LDM folder (or a bundled IRM-LDM name), optionally ``@OUTPUT``.

    Raises:
        ModelNotFoundError: diffusers missing, no such folder, not an IRM-LDM folder, or the
            AudioLDM folder it names is not found.
        ConfigError, CheckpointError: A folder that does not load.
    """
    require_diffusers()
    path_text, output = split_output(str(spec))
    if not path_text.strip():
        raise ModelNotFoundError("irm-ldm: needs a model folder, e.g. irm-ldm:runs/x/model")
    folder = Path(path_text).expanduser()
    from ...pretrained import list_models, load_model

    if path_text in {m.name for m in list_models()}:  # a name wins over a folder, as load_model
        model = load_model(path_text, device)
    elif not folder.is_dir():
        head, at, tail = path_text.rpartition("@")
        if (
            at
            and output is None
            and (head in {m.name for m in list_models()} or Path(head).is_dir())
        ):
            raise ModelNotFoundError(
                f"unknown IRM-LDM output {tail!r} in {path_text}: use @{', @'.join(OUTPUTS)}"
            )
        raise ModelNotFoundError(f"IRM-LDM model folder not found: {folder}")
    else:
        kind = _network_type(folder)
        if kind != NETWORK_TYPE:
            raise ModelNotFoundError(
                f"{folder} holds a {kind!r} model, not an IRM-LDM one: pass it as --model {folder}"
            )
        model = TextQueriedSeparator.from_pretrained(folder).to(device)
    if not hasattr(model.net, "set_output"):
        raise ModelNotFoundError(f"{path_text} is not an IRM-LDM model")
    if output is not None:
        model.net.set_output(output)
    return model.eval()


def _saved_network(folder: Path) -> dict[str, Any]:
    """The ``network`` section of ``folder``'s ``config.json`` (``{}`` when unreadable)."""
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        network = config["network"]
    except FileNotFoundError:
        raise ModelNotFoundError(
            f"{folder} is not a querysep model folder: {CONFIG_NAME} missing"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{folder / CONFIG_NAME} is not UTF-8 text") from None
    except ValueError as exc:  # what loading it as any model would say too
        raise ConfigError(f"{folder / CONFIG_NAME} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise ModelNotFoundError(
            f"cannot read {folder / CONFIG_NAME}: {exc.strerror or exc}"
        ) from None
    except (KeyError, TypeError):
        return {}
    return network if isinstance(network, dict) else {}


def _network_type(folder: Path) -> str:
    return str(_saved_network(folder).get("type", "unknown"))


def component_network(source: str, output: str | None = None) -> IrmLdm:
    """The components (front end, VAE, vocoder) of ``source``, with an untrained mask.

    For evaluation rows that never use the mask network (oracle resynthesis).

    Args:
        source: An IRM-LDM model (``irm-ldm:DIR``, a model folder or a bundled name: its
            components and front end), or directly an AudioLDM folder, a folder with
            ``vae/`` or a bundled VAE name (AudioLDM's front end).
        output: The output path (default: the model's, else ``vocoder``).

    Raises:
        ModelNotFoundError: ``source`` names nothing usable.
    """
    require_diffusers()
    from ...pretrained import list_models, verify_bundled

    text = source.removeprefix(f"{NETWORK_TYPE}:")
    text, suffix = split_output(text)
    folder = Path(text).expanduser()
    named = {m.name: m for m in list_models() if m.folder}
    if text in named:  # a name wins over a folder, as in load_model; its files are checked
        folder = verify_bundled(named[text])
    config: dict = {"ldm": text, "condition_dim": 1}
    network = _saved_network(folder) if (folder / CONFIG_NAME).is_file() else {}
    if network.get("type") == NETWORK_TYPE:
        config = dict(network["config"])
        config["ldm"] = str(resolve_ldm(str(config.get("ldm", "")), folder).root)
    picked = output or suffix
    if picked is not None:
        config["output"] = picked
    return IrmLdm(IrmLdmConfig.from_dict(config)).eval()
