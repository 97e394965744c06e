"""Oracle resynthesis rows (oracle-ldm, oracle-mel) and IRM-LDM rows in evaluations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from querysep.errors import ConfigError
from querysep.evaluation import ModelSystem, make_system
from querysep.metrics import get_metrics
from tests.ldm_support import SR, separator, two_sources

from .conftest import ValSet


def _scores(spec: str) -> tuple[str, dict[str, float]]:
    target, noise = two_sources(1.0)
    system = make_system(spec)
    estimate = system.separate(target + noise, SR, "a tone", target=target)
    assert estimate.shape == target.shape and estimate.dtype == np.float32
    return system.name, get_metrics(target + noise, target, estimate)


def test_phase_preserving_resynthesis_keeps_the_target(identity_ldm: Path) -> None:
    name, scores = _scores(f"oracle-ldm:phase-preserving:{identity_ldm}")
    assert name == f"oracle-ldm:phase-preserving:{identity_ldm}"
    assert scores["sdr"] > 15.0 and scores["si_sdr"] > 15.0
    _, exact = _scores(f"oracle-mel:phase-preserving:{identity_ldm}")
    assert exact["sdr"] == pytest.approx(scores["sdr"], abs=0.1)  # the identity VAE loses nothing


def test_resynthesis_without_the_mixture_phase_is_far_below_zero_si_sdr(identity_ldm: Path):
    name, scores = _scores(f"oracle-mel:vocoder:{identity_ldm}")
    assert name.endswith("[griffin-lim]")  # no vocoder weights in this folder: said so
    assert scores["si_sdr"] < -10.0


def test_vocoder_rows_run_the_vocoder_when_there_is_one(tiny_ldm: Path) -> None:
    name, scores = _scores(f"oracle-ldm:vocoder:{tiny_ldm}")
    assert name == f"oracle-ldm:vocoder:{tiny_ldm}"
    assert np.isfinite(scores["sdr"])


def test_oracle_rows_read_an_irm_ldm_model_folder(tmp_path: Path, identity_ldm: Path) -> None:
    separator(identity_ldm).save_pretrained(tmp_path / "model")
    _, scores = _scores(f"oracle-ldm:phase-preserving:irm-ldm:{tmp_path / 'model'}")
    assert scores["sdr"] > 15.0


@pytest.mark.parametrize("spec", ["oracle-ldm:loud:x", "oracle-mel:vocoder", "oracle-ldm:"])
def test_bad_oracle_specs_are_one_line_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match="OUTPUT:SOURCE"):
        make_system(spec)


def test_model_rows_name_their_output_path(tmp_path: Path, tiny_ldm: Path) -> None:
    separator(tiny_ldm, output="phase-preserving").save_pretrained(tmp_path / "model")
    system = make_system(f"irm-ldm:{tmp_path / 'model'}")
    assert isinstance(system, ModelSystem)
    assert system.name == f"irm-ldm:{tmp_path / 'model'} [phase-preserving]"
    vocoder = make_system(f"irm-ldm:{tmp_path / 'model'}@vocoder")
    assert vocoder.name == f"irm-ldm:{tmp_path / 'model'}@vocoder"  # already says it
    # a folder whose name holds an output's name still gets its tag
    separator(tiny_ldm, output="vocoder").save_pretrained(tmp_path / "vocoder-run")
    named = make_system(f"irm-ldm:{tmp_path / 'vocoder-run'}")
    assert named.name == f"irm-ldm:{tmp_path / 'vocoder-run'} [vocoder]"


def test_an_irm_ldm_rows_weight_digest_covers_its_vae(tmp_path: Path) -> None:
    from querysep.testing.ldm import tiny_audioldm_folder, tiny_vae

    ldm = tiny_audioldm_folder(tmp_path / "ldm", ["vae"])
    separator(ldm, output="phase-preserving").save_pretrained(tmp_path / "model")
    spec = f"irm-ldm:{tmp_path / 'model'}"
    digest = make_system(spec).settings["weights_sha256"]
    assert make_system(spec).settings["weights_sha256"] == digest  # the same files
    tiny_vae(seed=1).save_pretrained(str(ldm / "vae"))  # the mask network's files unchanged
    assert make_system(spec).settings["weights_sha256"] != digest


def test_an_irm_ldm_rows_digest_covers_the_vocoder_only_when_its_output_uses_it(
    tmp_path: Path,
) -> None:
    """A row of the phase-preserving output does not depend on the vocoder's weights (it was
    refused as changed when they changed), nor on files diffusers does not read."""
    from safetensors.torch import load_file, save_file

    from querysep.testing.ldm import tiny_audioldm_folder

    ldm = tiny_audioldm_folder(tmp_path / "ldm", ["vae", "vocoder"])
    separator(ldm, output="vocoder").save_pretrained(tmp_path / "model")
    voc, pp = f"irm-ldm:{tmp_path / 'model'}", f"irm-ldm:{tmp_path / 'model'}@phase-preserving"
    before = {spec: make_system(spec).settings["weights_sha256"] for spec in (voc, pp)}
    assert before[voc] != before[pp]
    (ldm / "vae" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"never read")
    weights = ldm / "vocoder" / "model.safetensors"
    state = load_file(weights)
    first = sorted(state)[0]
    state[first] = state[first] + 0.1
    save_file(state, weights)
    after = {spec: make_system(spec).settings["weights_sha256"] for spec in (voc, pp)}
    assert after[pp] == before[pp] and after[voc] != before[voc]


def test_ats_is_added_to_an_irm_ldm_row_from_an_older_run(
    tmp_path: Path, tiny_ldm: Path, valset: ValSet
) -> None:
    from querysep.evaluation import ATSHook, evaluate, resolve_systems

    separator(tiny_ldm, output="phase-preserving").save_pretrained(tmp_path / "model")
    spec = f"irm-ldm:{tmp_path / 'model'}"
    out = tmp_path / "out"
    run = {"progress": False, "baselines": False, "limit": 1}
    evaluate(valset.mixture_list, valset.audio_dir, [spec], out, **run)  # no ATS
    # a later run names only the mixture row: the IRM-LDM row is rebuilt for its ATS
    systems = resolve_systems(["mixture"], reference=True)
    hook = ATSHook("test-tiny")
    summary = evaluate(
        valset.mixture_list, valset.audio_dir, systems, out, metric_hooks=[hook], **run
    )
    assert summary.num_upgraded == 1
    assert f"{spec} [phase-preserving]" in (out / "per_clip.csv").read_text()
