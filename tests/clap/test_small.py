"""The small CLAP (esc50-clap): files, the bundled weights, behaviour, training, zero-shot."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import re
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from querysep.audio import load_audio
from querysep.captions.paraphrase import paraphrase
from querysep.clap import DEFAULT_CLAP, load_clap
from querysep.clap.small import ESC50_CLAP_SHA256, ClapEnsemble, SmallClap, SmallClapConfig
from querysep.clap.train import (
    PairwiseSigmoid,
    _check_run,
    _init_state,
    contrastive_loss,
    export_ensemble,
    load_train_config,
    refit_text_head,
    train,
)
from querysep.clap.zeroshot import (
    Esc50Split,
    _heldout_only_words,
    class_texts,
    evaluate_zeroshot,
    load_esc50,
    roc_auc,
    zeroshot_scores,
)
from querysep.data.recipes.esc50 import builtin_captions
from querysep.errors import (
    AudioError,
    CheckpointError,
    ConfigError,
    DataError,
    ModelNotFoundError,
    OutputError,
    SilentAudioError,
)
from querysep.models.text import HashingTextEncoder

FIXTURES = Path(__file__).parents[1] / "fixtures" / "esc50"
WEIGHTS = Path(__file__).parents[2] / "src" / "querysep" / "weights" / "esc50-clap"


def tiny_config(**kwargs: object) -> SmallClapConfig:
    base = dict(
        window_seconds=0.5,
        n_fft=256,
        hop_length=128,
        n_mels=16,
        channels=[4, 8],
        dim=8,
        text_dim=384,
        dropout=0.0,
    )
    base.update(kwargs)
    return SmallClapConfig(**base)  # type: ignore[arg-type]


def test_round_trip_gives_identical_embeddings(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SmallClap(tiny_config()).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["format"] == "querysep-clap"
    loaded = load_clap(str(tmp_path / "m"))
    assert isinstance(loaded, SmallClap)
    audio = np.random.default_rng(0).standard_normal((3, 12000)).astype(np.float32)
    torch.testing.assert_close(loaded.embed_audio(audio, 16000), model.embed_audio(audio, 16000))
    sentence = torch.randn(5, 384)
    with torch.no_grad():
        torch.testing.assert_close(loaded.text_features(sentence), model.text_features(sentence))
    assert not any(k.startswith("_text_encoder") for k in loaded.state_dict())


def test_saved_folder_is_written_atomically_with_plain_permissions(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        folder = SmallClap(tiny_config()).save_pretrained(tmp_path / "m")
    finally:
        os.umask(old)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    for path in folder.iterdir():  # safetensors alone would leave the weights owner-only
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"^cannot write .*file.*: .*file, not a folder"):
        SmallClap(tiny_config()).save_pretrained(tmp_path / "file" / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "m"]


def test_strict_loading_names_the_bad_keys(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    SmallClap(tiny_config()).save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state.pop("logit_scale")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing \['logit_scale'\].*extra\.weight"):
        SmallClap.from_pretrained(tmp_path)


def test_float16_storage_halves_the_file_and_keeps_the_scores(tmp_path: Path) -> None:
    """Weights stored as float16 load as float32, score within 1e-3 of the float32 model,
    stay float16 when saved again, and a weight float16 cannot hold is refused."""
    torch.manual_seed(0)
    model = SmallClap(tiny_config(channels=[16, 32], dim=32)).eval()
    full = model.save_pretrained(tmp_path / "f32")
    half = model.save_pretrained(tmp_path / "f16", "float16")
    assert json.loads((half / "config.json").read_text())["weights_dtype"] == "float16"
    sizes = [(f / "model.safetensors").stat().st_size for f in (half, full)]
    ratio = sizes[0] / sizes[1]
    assert 0.45 < ratio < 0.6
    loaded = load_clap(str(half))
    assert isinstance(loaded, SmallClap) and loaded.weights_dtype == "float16"
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    audio = np.random.default_rng(0).standard_normal((4, 12000)).astype(np.float32)
    sentence = torch.nn.functional.normalize(torch.randn(6, 384), dim=-1)
    with torch.no_grad():
        scores = [
            m.embed_audio(audio, 16000)
            @ torch.nn.functional.normalize(m.text_features(sentence), dim=-1).T
            for m in (model, loaded)
        ]
    difference = (scores[0] - scores[1]).abs().max().item()
    assert 0 < difference < 1e-3  # rounded, not lost
    # saved again without a dtype, it stays float16, byte for byte
    again = loaded.save_pretrained(tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (half / "model.safetensors").read_bytes()
    assert load_clap(str(full)).weights_dtype == "float32"
    with torch.no_grad():
        model.text_head.linear.weight[0, 0] = 1e6
    with pytest.raises(ConfigError, match=r"text_head\.linear\.weight does not fit in float16"):
        model.save_pretrained(tmp_path / "big", "float16")
    assert not (tmp_path / "big").exists()
    with pytest.raises(ConfigError, match="weights_dtype must be one of float32, float16"):
        model.save_pretrained(tmp_path / "bad", "int8")
    config = json.loads((half / "config.json").read_text())
    (half / "config.json").write_text(json.dumps({**config, "weights_dtype": "float8"}))
    with pytest.raises(CheckpointError, match="weights_dtype must be one of"):
        load_clap(str(half))


def _random_member(seed: int, **kwargs: object) -> SmallClap:
    torch.manual_seed(seed)
    return SmallClap(tiny_config(**kwargs)).eval()


def test_ensemble_scores_are_the_mean_of_its_members(tmp_path: Path) -> None:
    members = [_random_member(0), _random_member(1, channels=[6, 12], dim=5)]
    ensemble = ClapEnsemble(members, {"name": "pair"}).eval()
    assert ensemble.dim == 13
    audio = np.random.default_rng(1).standard_normal((3, 12000)).astype(np.float32)
    sentence = torch.nn.functional.normalize(torch.randn(4, 384), dim=-1)
    with torch.no_grad():
        joint_text = ensemble._join([m.text_features(sentence) for m in members])
        each_text = [
            torch.nn.functional.normalize(m.text_features(sentence), dim=-1) for m in members
        ]
    joint = ensemble.embed_audio(audio, 16000) @ joint_text.T
    each = [m.embed_audio(audio, 16000) @ t.T for m, t in zip(members, each_text, strict=True)]
    torch.testing.assert_close(joint, (each[0] + each[1]) / 2, rtol=1e-5, atol=1e-6)
    # a member alone is not the ensemble: the pair differs from either of its members
    assert (joint - each[0]).abs().max() > 1e-3 and (joint - each[1]).abs().max() > 1e-3
    # saved, it reloads by folder as the same ensemble
    ensemble.save_pretrained(tmp_path / "pair")
    config = json.loads((tmp_path / "pair" / "config.json").read_text())
    assert config["format"] == "querysep-clap-ensemble" and len(config["members"]) == 2
    loaded = load_clap(str(tmp_path / "pair"))
    assert isinstance(loaded, ClapEnsemble) and loaded.name == "pair"
    encoder = HashingTextEncoder(384)
    loaded.members[0].__dict__["_text_encoder"] = encoder
    assert loaded.text_encoder() is encoder  # one sentence encoder, shared by the members
    assert loaded.members[1].text_encoder() is encoder
    torch.testing.assert_close(loaded.embed_audio(audio, 16000), ensemble.embed_audio(audio, 16000))


def test_ensemble_refuses_mismatched_members_and_bad_files(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    with pytest.raises(ConfigError, match="window_seconds"):
        ClapEnsemble([_random_member(0), _random_member(1, window_seconds=1.0)])
    with pytest.raises(ConfigError, match="at least one"):
        ClapEnsemble([])
    ClapEnsemble([_random_member(0), _random_member(1)]).save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state.pop("members.1.logit_scale")
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing \['members\.1\.logit_scale'\]"):
        load_clap(str(tmp_path))
    (tmp_path / "config.json").write_text('{"format": "querysep-clap-ensemble", "members": []}')
    with pytest.raises(CheckpointError, match="ensemble config"):
        load_clap(str(tmp_path))
    (tmp_path / "config.json").write_text('{"format": "querysep-clap-ensemble", "members": [3]}')
    with pytest.raises(CheckpointError, match=r"ensemble config.*must be a mapping of settings"):
        load_clap(str(tmp_path))


def test_bundled_model_loads_and_is_checked() -> None:
    digest = hashlib.sha256((WEIGHTS / "model.safetensors").read_bytes()).hexdigest()
    assert digest == ESC50_CLAP_SHA256
    assert (WEIGHTS / "model.safetensors").stat().st_size < 20 * 2**20
    assert DEFAULT_CLAP == "esc50-clap"
    model = load_clap("esc50-clap")
    assert isinstance(model, ClapEnsemble) and model.name == "esc50-clap"
    assert len(model.members) == 5  # the recipe's five runs (configs/esc50-clap.yaml)
    assert [m.config.metadata for m in model.members] == [{}] * 5  # runs: in the ensemble
    # the recorded recipe is the one-command recipe, setting for setting
    recipe = load_train_config(str(Path(__file__).parents[2] / "configs" / "esc50-clap.yaml"))
    recorded = model.metadata["training"]["config"]
    assert recorded == json.loads(json.dumps(asdict(recipe)))
    assert recorded["snapshots"] and recorded["members"] == 5
    runs = model.metadata["training"]["members"]
    # a snapshot ensemble: member i > 0 started from member i-1's exported model
    assert [r["config"]["seed"] for r in runs] == [0, 1, 2, 3, 4]
    assert {r["config"]["epochs"] for r in runs} == {150}
    assert [r["config"]["init_from"] for r in runs][1:] == [
        f"runs/esc50-clap/member{i}/model" for i in range(4)
    ]
    assert runs[0]["config"]["init_from"] is None and runs[0].get("init") is None
    assert [r["init"]["training"]["config"]["name"] for r in runs[1:]] == [
        f"esc50-clap-member{i}" for i in range(4)
    ]
    assert all(r["config"]["more_captions"] and r["text_head_refit"]["texts"] == 669 for r in runs)
    assert all(r["config"]["model"]["metadata"] == {} for r in runs)  # each run its own record
    assert model.weights_dtype == "float16"  # five members fit 20 MB only in float16
    # the audio towers run channels-last (faster on CPU, benchmarks/clap_speed.py)
    for member in model.members:
        conv = member.audio.blocks[1].net[0].weight
        assert conv.is_contiguous(memory_format=torch.channels_last)
        assert not conv.is_contiguous()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert isinstance(load_clap(), ClapEnsemble)


@pytest.fixture(scope="module")
def bundled() -> ClapEnsemble:
    return load_clap("esc50-clap")  # type: ignore[return-value]


def test_bundled_model_tells_dog_from_rain(bundled: ClapEnsemble) -> None:
    dog, _ = load_audio(FIXTURES / "4-182395-A-0.flac", 16000, mono=True)
    rain, _ = load_audio(FIXTURES / "4-160999-A-10.flac", 16000, mono=True)
    scores = bundled.score([dog[0], rain[0]], 16000, ["a dog barking", "rain falling"])
    assert scores[0, 0] > scores[0, 1]
    assert scores[1, 1] > scores[1, 0]


def test_training_texts_never_hold_heldout_captions() -> None:
    heldout = builtin_captions("heldout")
    for category, captions in heldout.items():
        texts = class_texts(category)
        assert category.replace("_", " ") in texts
        assert not set(captions) & set(texts)


_SUFFIXES = ("ingly", "edly", "ings", "ing", "ers", "er", "ies", "ied", "es", "ed", "ly", "s", "y")


def _stem(word: str) -> str:
    """A crude stem: up to two common suffixes off, a final e, then a doubled last letter
    (yelping, yelps -> yelp; clattering, clatter -> clat; droning, drone -> dron)."""
    for _ in range(2):
        suffix = next((x for x in _SUFFIXES if word.endswith(x) and len(word) - len(x) >= 3), "")
        if not suffix:
            break
        word = word[: -len(suffix)]
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word[:-1] if len(word) > 3 and word[-1] == word[-2] else word


def _stem_list(text: str) -> list[str]:
    return [_stem(w) for w in re.findall("[a-z]+", text.lower())]


def _stems(text: str) -> set[str]:
    return set(_stem_list(text))


def _runs_of_three(text: str) -> set[tuple[str, ...]]:
    words = _stem_list(text)
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def test_more_captions_join_after_the_train_ones_without_heldout_vocabulary() -> None:
    heldout = builtin_captions("heldout")
    more = builtin_captions("more")
    train = builtin_captions("train")
    assert list(more) == list(train)
    held_only = _heldout_only_words(_stems)
    assert {"yelp", "roar", "sleep", "clat", "dron", "slow"} <= held_only  # forms to catch
    assert _stems("the clatter of a train") & held_only  # a withdrawn caption stays out
    every_heldout = [c.lower() for caps in heldout.values() for c in caps]
    heldout_runs = set().union(*(_runs_of_three(c) for c in every_heldout))
    counts = []
    for category in train:
        plain = class_texts(category)
        texts = class_texts(category, more_captions=True)
        assert texts[: len(plain)] == plain
        added = texts[len(plain) :]
        assert added == more[category]
        assert len(set(added)) == len(added) and not set(added) & set(plain)
        assert not set(heldout[category]) & set(texts)
        for text in added:
            assert not _stems(text) & held_only, (category, text)
            assert not _runs_of_three(text) & heldout_runs, (category, text)
            for held in every_heldout:  # no part of a held-out caption, nor one inside
                assert not re.search(rf"\b{re.escape(text.lower())}\b", held), (text, held)
                assert not re.search(rf"\b{re.escape(held)}\b", text.lower()), (text, held)
        counts.append(len(added))
    assert sum(counts) == 269 and min(counts) == 2 and max(counts) == 9
    # with paraphrases too: the more captions come first, and nothing repeats
    with_both = class_texts("dog", paraphrases=3, paraphrase=paraphrase, more_captions=True)
    plain = class_texts("dog", more_captions=True)
    assert with_both[: len(plain)] == plain
    assert len(set(with_both)) == len(with_both) > len(plain)


def test_paraphrases_need_a_paraphraser_passed_in(tmp_path: Path) -> None:
    """The clap room does not import the captions room; the caller hands the paraphraser."""
    with pytest.raises(ConfigError, match="paraphrases: 2 needs the offline paraphraser"):
        class_texts("dog", paraphrases=2)
    assert class_texts("dog", paraphrases=0) == class_texts("dog")
    _write_toy_esc50(tmp_path / "data")
    config = load_train_config(
        None, [f"data={tmp_path / 'data'}", "train_folds=[1]", "paraphrases=2", "members=2"]
    )
    with pytest.raises(ConfigError, match="needs the offline paraphraser"):
        train(config, tmp_path / "run", log=lambda line: None)
    assert not (tmp_path / "run").exists()  # refused before anything trained


def test_paraphrased_training_texts_avoid_heldout_only_words() -> None:
    heldout = builtin_captions("heldout")
    train = builtin_captions("train")
    held_words = {w for caps in heldout.values() for c in caps for w in c.lower().split()}
    known = {w for caps in train.values() for c in caps for w in c.lower().split()}
    for category in ("dog", "crying_baby", "clock_tick", "rooster"):
        plain = class_texts(category)
        texts = class_texts(category, paraphrases=5, paraphrase=paraphrase)
        assert texts[: len(plain)] == plain
        extra = texts[len(plain) :]
        assert len(extra) >= 5 and len(set(extra)) == len(extra)
        assert not set(extra) & set(plain)
        for text in extra:
            new_words = set(text.lower().split()) - known
            assert not new_words & held_words, (category, text)
        assert not set(heldout[category]) & set(texts)


def test_contrastive_loss_prefers_aligned_embeddings() -> None:
    text = torch.eye(4)
    soft = torch.eye(4)
    scale = torch.tensor(np.log(10.0))
    aligned = contrastive_loss(text.clone(), text, soft, scale)
    shuffled = contrastive_loss(text[[1, 2, 3, 0]], text, soft, scale)
    assert aligned < shuffled


def test_pairwise_sigmoid_loss_is_per_pair_binary_cross_entropy() -> None:
    loss_fn = PairwiseSigmoid(num_classes=4)
    assert float(loss_fn.bias.detach()) == pytest.approx(-np.log(3))  # prior odds: 1 match in 4
    with torch.no_grad():
        loss_fn.log_scale.fill_(np.log(10.0))
        loss_fn.bias.fill_(-2.0)
    text, soft = torch.eye(4), torch.eye(4)
    aligned = loss_fn(text.clone(), text, soft)
    # per clip: one matching pair at logit 10 - 2 and three mismatched ones at logit -2
    expected = np.log1p(np.exp(-8.0)) + 3 * np.log1p(np.exp(-2.0))
    assert float(aligned.detach()) == pytest.approx(expected, rel=1e-5)
    assert loss_fn(text[[1, 2, 3, 0]], text, soft) > aligned
    # unlike InfoNCE, it sees a shift of every score: all pairs scoring high costs more
    everything_matches = loss_fn(torch.ones(4, 4), torch.ones(4, 4), soft)
    assert everything_matches > aligned
    same_rows = contrastive_loss(torch.ones(4, 4), torch.ones(4, 4), soft, torch.tensor(0.0))
    assert float(same_rows) == pytest.approx(np.log(4), rel=1e-5)


def _write_toy_esc50(root: Path) -> None:
    (root / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    rows = []
    for i in range(8):
        target = i % 2
        if target == 0:
            clip = 0.3 * np.sin(2 * np.pi * (300 + 40 * i) * t)
        else:
            clip = 0.1 * rng.standard_normal(16000)
        name = f"{1 + i // 4}-{i}-A-{target}.flac"
        sf.write(root / "audio" / name, clip.astype(np.float32), 16000)
        rows.append([name, 1 + i // 4, target, ["dog", "rain"][target]])
    with open(root / "esc50.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "fold", "target", "category"])
        writer.writerows(rows)


# A model and crop small enough to train in seconds on the toy data.
_TOY_MODEL = [
    "model.window_seconds=0.5",
    "model.n_fft=256",
    "model.hop_length=128",
    "model.n_mels=16",
    "model.channels=[4,8]",
    "model.dim=8",
    "augment.crop_seconds=0.5",
]


def _toy_run(data: Path, epochs: int, *extra: str) -> list[str]:
    """Overrides for a short run of the toy model on the toy data of ``data``."""
    return [
        f"data={data}",
        "train_folds=[1,2]",
        f"epochs={epochs}",
        "batch_size=4",
        "precision=32",
        *_TOY_MODEL,
        *extra,
    ]


def test_training_smoke_run_learns_and_exports(tmp_path: Path) -> None:
    _write_toy_esc50(tmp_path / "data")
    config = load_train_config(
        None,
        [
            f"data={tmp_path / 'data'}",
            "train_folds=[1]",
            "val_folds=[2]",
            "epochs=6",
            "batch_size=2",
            "lr=0.01",
            "warmup_epochs=1",
            "val_every=6",
            "precision=32",
            *_TOY_MODEL,
            "augment.mixup_prob=0",
            "augment.noise_prob=0",
        ],
    )
    encoder = HashingTextEncoder(384)  # stands in for MiniLM: seconds, not minutes
    folder = train(config, tmp_path / "run", log=lambda line: None, text_encoder=encoder)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 6
    assert log[-1]["loss"] < log[0]["loss"]
    assert 0.0 <= log[-1]["val"]["acc_labels"] <= 1.0
    model = SmallClap.from_pretrained(folder)
    assert model.embed_audio(np.zeros(8000, np.float32), 16000).shape == (1, 8)
    # a finished run resumes to the same export without training again
    config.epochs = 6
    train(config, tmp_path / "run", log=lambda line: None, text_encoder=encoder)
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 6


def test_training_members_trains_each_seed_once_and_exports_their_ensemble(
    tmp_path: Path,
) -> None:
    _write_toy_esc50(tmp_path / "data")
    overrides = _toy_run(tmp_path / "data", 2, "seed=5", "members=2")
    config = load_train_config(None, overrides)
    encoder = HashingTextEncoder(384)
    lines: list[str] = []
    folder = train(config, tmp_path / "run", log=lines.append, text_encoder=encoder)
    ensemble = load_clap(str(folder))
    assert isinstance(ensemble, ClapEnsemble) and len(ensemble.members) == 2
    seeds = [m["config"]["seed"] for m in ensemble.metadata["training"]["members"]]
    assert seeds == [5, 6]
    # each member is exactly its own single-seed run
    for index in range(2):
        alone = SmallClap.from_pretrained(tmp_path / "run" / f"member{index}" / "model")
        for key, value in alone.state_dict().items():
            torch.testing.assert_close(ensemble.members[index].state_dict()[key], value)
    weight = "audio.blocks.0.net.0.weight"
    a, b = (m.state_dict()[weight] for m in ensemble.members)
    assert not torch.equal(a, b)
    # running the command again trains nothing and exports the same ensemble
    train(config, tmp_path / "run", log=lines.append, text_encoder=encoder)
    for index in range(2):
        log = (tmp_path / "run" / f"member{index}" / "log.jsonl").read_text().splitlines()
        assert len(log) == 2
    with pytest.raises(ConfigError, match="members"):
        train(load_train_config(None, ["members=0"]), tmp_path / "bad", log=lines.append)
    # the recipe's weights_dtype decides how the exported ensemble is stored
    half = export_ensemble(
        load_train_config(None, [*overrides, "weights_dtype=float16"]),
        [tmp_path / "run" / f"member{index}" / "model" for index in range(2)],
        tmp_path / "half",
    )
    reloaded = load_clap(str(half))
    assert isinstance(reloaded, ClapEnsemble) and reloaded.weights_dtype == "float16"
    assert [m.weights_dtype for m in reloaded.members] == ["float16", "float16"]
    for key, value in ensemble.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[key], value, rtol=1e-3, atol=1e-4)


def test_snapshots_chain_each_member_from_the_previous_ones_model(tmp_path: Path) -> None:
    """snapshots: true is exactly the runs done by hand: member i > 0 trained with its own
    seed from member i - 1's exported (refitted) model; the ensemble is of those snapshots."""
    _write_toy_esc50(tmp_path / "data")
    encoder = HashingTextEncoder(384)
    base = _toy_run(tmp_path / "data", 1, "model.text_mlp=false", "text_ridge=0.3", "seed=4")
    config = load_train_config(None, [*base, "members=3", "snapshots=true"])
    lines: list[str] = []
    chained = load_clap(
        str(train(config, tmp_path / "snap", log=lines.append, text_encoder=encoder))
    )
    assert isinstance(chained, ClapEnsemble) and len(chained.members) == 3
    start = None
    for index in range(3):
        alone = [*base, f"seed={4 + index}", *([f"init_from={start}"] if start else [])]
        start = train(
            load_train_config(None, alone),
            tmp_path / f"hand{index}",
            log=lines.append,
            text_encoder=encoder,
        )
        for key, value in SmallClap.from_pretrained(start).state_dict().items():
            torch.testing.assert_close(chained.members[index].state_dict()[key], value, msg=key)
    first, second = (m.state_dict()["audio.blocks.0.net.0.weight"] for m in chained.members[:2])
    assert not torch.equal(first, second)
    runs = chained.metadata["training"]["members"]
    assert "init" not in runs[0]  # from random weights
    for index in (1, 2):  # each from the one before: named, with the weights' digest
        assert runs[index]["init"]["from"] == str(
            tmp_path / "snap" / f"member{index - 1}" / "model"
        )
        assert runs[index]["init"]["training"]["config"]["seed"] == 4 + index - 1
    # resumed, it trains nothing again and exports the same snapshots
    again = load_clap(str(train(config, tmp_path / "snap", log=lines.append, text_encoder=encoder)))
    for a, b in zip(chained.members, again.members, strict=True):
        for key, value in a.state_dict().items():
            torch.testing.assert_close(b.state_dict()[key], value, msg=key)
    with pytest.raises(ConfigError, match="snapshots: true needs members >= 2"):
        train(load_train_config(None, [*base, "snapshots=true"]), tmp_path / "one", log=print)
    listed = "members=[{}, {init_from: esc50-clap}]"
    with pytest.raises(ConfigError, match=r"members\[1\] sets init_from, but with snapshots"):
        train(load_train_config(None, [*base, listed, "snapshots=true"]), tmp_path / "x", log=print)
    assert not (tmp_path / "one").exists() and not (tmp_path / "x").exists()


def test_training_members_as_per_member_settings(tmp_path: Path) -> None:
    """``members: [{...}, {...}]``: each member is the recipe with its own settings (seed
    kept unless set), trained as a single run would be; bad lists are refused up front."""
    _write_toy_esc50(tmp_path / "data")
    overrides = _toy_run(tmp_path / "data", 2, "seed=5")
    encoder = HashingTextEncoder(384)
    lines: list[str] = []
    listed = [*overrides, "members=[{epochs: 1}, {epochs: 2, lr: 0.02, model: {channels: [6]}}]"]
    folder = train(
        load_train_config(None, listed), tmp_path / "run", log=lines.append, text_encoder=encoder
    )
    ensemble = load_clap(str(folder))
    assert isinstance(ensemble, ClapEnsemble) and len(ensemble.members) == 2
    configs = [m["config"] for m in ensemble.metadata["training"]["members"]]
    assert [(c["seed"], c["epochs"], c["lr"]) for c in configs] == [(5, 1, 0.002), (5, 2, 0.02)]
    # a member's model names only what it changes: the rest is the recipe's
    first, second = (m.config for m in ensemble.members)
    assert (first.channels, first.dim, first.n_mels) == ([4, 8], 8, 16)
    assert (second.channels, second.dim, second.n_mels) == ([6], 8, 16)
    assert ensemble.members[1].state_dict()["audio.blocks.0.net.0.weight"].shape[0] == 6
    assert [c["model"]["channels"] for c in configs] == [[4, 8], [6]]
    lengths = [
        len((tmp_path / "run" / f"member{i}" / "log.jsonl").read_text().splitlines())
        for i in range(2)
    ]
    assert lengths == [1, 2]
    alone = train(
        load_train_config(None, [*overrides, "epochs=1"]),
        tmp_path / "alone",
        log=lines.append,
        text_encoder=encoder,
    )
    for key, value in SmallClap.from_pretrained(alone).state_dict().items():
        torch.testing.assert_close(ensemble.members[0].state_dict()[key], value, msg=key)
    for bad, message in (
        ("members=[]", "whole number"),
        ("members=[3]", "mapping"),
        ("members=[{augment: {speed: 0.2}}]", "may set only"),
        ("members=[{model: {chanels: [4]}}]", r"members\[0\]\.model\.chanels: unknown key"),
        ("members=[{epochs: 1}, {model: {channels: [4, 0]}}]", r"members\[1\]\.model\.channels"),
        ("members=[{model: 3}]", r"members\[0\]\.model"),
        ("members=[{epochs: 1}, {loss: nope}]", "loss must be"),
        ("members=[{epochs: 1}, {text_ridge: 0.3}]", "linear text head"),
        ("members=[{epochs: 1}, {weights_dtype: float16}]", "may set only"),
        ("weights_dtype=bfloat16", "weights_dtype must be one of"),
    ):
        with pytest.raises(ConfigError, match=message):
            train(load_train_config(None, [*overrides, bad]), tmp_path / "bad", log=lines.append)
        assert not (tmp_path / "bad").exists()


def test_training_with_the_pairwise_loss_resumes_exactly(tmp_path: Path) -> None:
    _write_toy_esc50(tmp_path / "data")
    overrides = _toy_run(tmp_path / "data", 3, "loss=infonce+sigmoid")
    config = load_train_config(None, overrides)
    encoder = HashingTextEncoder(384)
    whole = train(config, tmp_path / "whole", log=lambda line: None, text_encoder=encoder)

    def stop_at_epoch_2(line: str) -> None:  # raised before epoch 2's checkpoint is written
        if '"epoch": 2,' in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", log=stop_at_epoch_2, text_encoder=encoder)
    checkpoint = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and set(checkpoint["pairwise"]) == {"log_scale", "bias"}
    resumed = train(config, tmp_path / "cut", log=lambda line: None, text_encoder=encoder)
    a, b = SmallClap.from_pretrained(whole), SmallClap.from_pretrained(resumed)
    for key, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[key], value, rtol=0, atol=0)
    log = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert all("pair_bias" in record for record in log)
    infonce = load_train_config(None, [*overrides[:-1], "loss=infonce"])
    with pytest.raises(ConfigError, match="with the pairwise sigmoid loss, but loss is 'infonce'"):
        train(infonce, tmp_path / "whole", log=lambda line: None, text_encoder=encoder)
    with pytest.raises(ConfigError, match="loss must be one of"):
        train(load_train_config(None, ["loss=hinge"]), tmp_path / "bad", log=lambda line: None)


def test_config_overrides_and_unknown_keys() -> None:
    members = load_train_config(None, ['members=[{lr: 2e-3, epochs: "3"}]']).members
    assert members == [{"lr": 0.002, "epochs": 3}]  # YAML's strings, checked and converted
    config = load_train_config(None, ["epochs=3", "augment.speed=0", "model.channels=[8,16]"])
    assert config.epochs == 3 and config.augment.speed == 0
    assert config.model.channels == [8, 16]
    with pytest.raises(ConfigError, match=r"augment\.nope"):
        load_train_config(None, ["augment.nope=1"])


def test_roc_auc_known_values() -> None:
    assert roc_auc(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 0, 1, 1])) == 1.0
    assert roc_auc(np.array([0.4, 0.3, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, 1, 0, 1])) == 0.5
    assert roc_auc(np.array([0.1, 0.35, 0.4, 0.8]), np.array([0, 1, 0, 1])) == 0.75


def test_zeroshot_scores_on_a_toy_case() -> None:
    eye = torch.eye(3)
    audio = eye[[0, 1, 2, 0]]  # clips of classes 0, 1, 2, 0 ...
    targets = np.array([0, 1, 2, 1])  # ... but the last one is labelled 1: 3 of 4 right
    captions = eye[[0, 0, 1, 1, 2, 2]]
    result = zeroshot_scores(audio, targets, eye, captions, np.array([0, 0, 1, 1, 2, 2]))
    assert result["acc_labels"] == 0.75
    assert result["acc_captions"] == 0.75
    # 8 matching pairs (6 score 1, 2 score 0) vs 16 mismatched (2 score 1, 14 score 0):
    # wins 6*14, ties 6*2 + 2*14 counted half -> 104 of 128
    assert result["roc_auc"] == pytest.approx(104 / 128)


def test_evaluate_zeroshot_runs_for_any_clap_model() -> None:
    model = load_clap("test-tiny")
    categories = list(builtin_captions("heldout"))
    rng = np.random.default_rng(0)
    split = Esc50Split(
        rng.standard_normal((4, 16000)).astype(np.float32) * 0.1,
        np.array([0, 1, 2, 3]),
        categories,
        16000,
        ["a", "b", "c", "d"],
    )
    result = evaluate_zeroshot(model, split)
    assert set(result) == {"acc_labels", "acc_captions", "roc_auc", "num_clips"}
    assert 0 <= result["roc_auc"] <= 1


def test_mel_augmentation_off_is_identity_and_on_changes_the_batch() -> None:
    from querysep.clap.augment import AugmentConfig, augment_mel, spec_augment
    from querysep.clap.small import mel_centres

    config = tiny_config()
    model = SmallClap(config)
    audio = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 8000)).astype("f4"))
    mel = model.logmel.power(audio)
    hz = mel_centres(config.n_mels, config.f_min, config.f_max)
    weight = model.logmel.fbank.sum(0)
    off = AugmentConfig(speed=0, gain_db=0, mixup_prob=0, noise_prob=0, time_masks=0, freq_masks=0)
    gen = torch.Generator().manual_seed(0)
    out, soft = augment_mel(mel, torch.arange(4), 4, mel.shape[-1], hz, weight, off, gen)
    torch.testing.assert_close(out, mel, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(soft, torch.eye(4))
    torch.testing.assert_close(spec_augment(mel.log(), off, gen), mel.log())
    on = AugmentConfig(mixup_prob=1.0, noise_prob=1.0)
    out, soft = augment_mel(mel, torch.arange(4), 4, 10, hz, weight, on, gen)
    assert out.shape == (4, config.n_mels, 10) and (out > 0).all()
    torch.testing.assert_close(soft.sum(1), torch.ones(4))
    assert (soft.max(1).values < 1).any()


def test_text_head_refit_solves_the_ridge_problem_and_leaves_the_audio_tower(
    tmp_path: Path,
) -> None:
    """The refitted linear head is the ridge solution mapping each training text to its class's
    unit audio centroid, so after it every text scores its own class's clips highest."""
    _write_toy_esc50(tmp_path / "data")
    split = load_esc50(tmp_path / "data", [1, 2])
    torch.manual_seed(0)
    encoder = HashingTextEncoder(384)
    model = SmallClap(tiny_config(text_mlp=False), encoder).eval()
    audio_before = {k: v.clone() for k, v in model.audio.state_dict().items()}
    texts = [t for c in split.categories for t in class_texts(c)]
    owner = np.repeat([0, 1], [len(class_texts(c)) for c in split.categories])
    before = model.embed_text(texts)

    info = refit_text_head(model, split, 0.3)
    assert info == {
        "method": "ridge",
        "penalty": 0.3,
        "discriminant": 0.0,
        "shrinkage": 0.3,
        "templates": ["{}"],
        "audio_views": 1,
        "more_captions": False,
        "texts": len(texts),
        "clips": 8,
    }
    for key, value in model.audio.state_dict().items():
        torch.testing.assert_close(value, audio_before[key])
    # the normal equations, solved independently as least squares on an augmented system
    audio = model.embed_audio(split.audio, split.sample_rate).double().numpy()
    centroids = np.stack([audio[split.targets == k].mean(0) for k in (0, 1)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    x = np.hstack([encoder.encode(texts).double().numpy(), np.ones((len(texts), 1))])
    big_x = np.vstack([x, np.sqrt(0.3) * np.eye(x.shape[1])])
    big_y = np.vstack([centroids[owner], np.zeros((x.shape[1], centroids.shape[1]))])
    want = np.linalg.lstsq(big_x, big_y, rcond=None)[0]
    head = model.text_head.linear
    np.testing.assert_allclose(head.weight.detach().double().numpy(), want[:-1].T, atol=1e-5)
    np.testing.assert_allclose(head.bias.detach().double().numpy(), want[-1], atol=1e-5)
    after = model.embed_text(texts)
    assert not torch.allclose(after, before)
    scores = after.double().numpy() @ centroids.T  # each text nearest its own class's sound
    assert (scores.argmax(1) == owner).all()

    with pytest.raises(ConfigError, match="positive"):
        refit_text_head(model, split, 0.0)
    with pytest.raises(ConfigError, match="linear text head"):
        refit_text_head(SmallClap(tiny_config(text_mlp=True), encoder), split, 0.3)
    one_class = Esc50Split(
        split.audio[:2], np.array([0, 0]), split.categories, split.sample_rate, ["a", "b"]
    )
    with pytest.raises(ConfigError, match="every class"):
        refit_text_head(model, one_class, 0.3)


def test_training_with_more_captions_trains_on_them(tmp_path: Path) -> None:
    _write_toy_esc50(tmp_path / "data")
    overrides = _toy_run(tmp_path / "data", 2, "model.text_mlp=false")
    encoder = HashingTextEncoder(384)
    runs = {}
    for name, extra in (("plain", []), ("more", ["more_captions=true"])):
        lines: list[str] = []
        config = load_train_config(None, [*overrides, *extra])
        folder = train(config, tmp_path / name, log=lines.append, text_encoder=encoder)
        runs[name] = (lines[0], SmallClap.from_pretrained(folder))
    more = len(builtin_captions("more")["dog"]) + len(builtin_captions("more")["rain"])
    plain_texts = len(class_texts("dog")) + len(class_texts("rain"))
    assert f", {plain_texts} texts," in runs["plain"][0]
    assert f", {plain_texts + more} texts," in runs["more"][0]
    # the texts drawn each step differ, so the same seed trains another text head
    heads = [run[1].text_head.linear.weight for run in runs.values()]
    assert not torch.allclose(*heads)


def test_training_from_init_starts_member_i_from_member_i(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``init_from``: each member of a run starts from the same member of an ensemble (with lr 0
    its weights stay those), loaded once for all members; a lone model starts a lone run;
    misfits fail before training; a run with a checkpoint resumes from it and no longer needs
    the init model."""
    _write_toy_esc50(tmp_path / "data")
    encoder = HashingTextEncoder(384)
    lines: list[str] = []
    base = _toy_run(tmp_path / "data", 1, "members=2")
    first = train(
        load_train_config(None, base), tmp_path / "a", log=lines.append, text_encoder=encoder
    )
    source = load_clap(str(first))
    assert isinstance(source, ClapEnsemble)
    # each member's record is its own: no member's metadata inside another's settings
    for run in source.metadata["training"]["members"]:
        assert run["config"]["model"]["metadata"] == {}
    still = load_train_config(None, [*base, f"init_from={first}", "lr=0", "seed=9"])
    loads: list[str] = []

    def counted(name: str, **kwargs: Any) -> Any:
        loads.append(name)
        return load_clap(name, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr("querysep.clap.registry.load_clap", counted)
        again = load_clap(str(train(still, tmp_path / "b", log=lines.append, text_encoder=encoder)))
    assert loads == [str(first)]  # checked, then both members started, from one load
    assert isinstance(again, ClapEnsemble)
    weight = "audio.blocks.0.net.0.weight"
    for index in range(2):
        torch.testing.assert_close(
            again.members[index].state_dict()[weight], source.members[index].state_dict()[weight]
        )
    assert not torch.equal(
        again.members[0].state_dict()[weight], source.members[1].state_dict()[weight]
    )
    assert any("initialised from" in line and "(its member 1)" in line for line in lines)
    # the new model records where it started: the source, its digest, and how it was trained
    for index, run in enumerate(again.metadata["training"]["members"]):
        assert run["init"]["from"] == str(first) and run["init"]["member"] == index
        assert run["init"]["weights_sha256"] == source.weights_sha256 != ""
        assert run["init"]["training"] == source.metadata["training"]["members"][index]
        assert run["config"]["seed"] == 9 + index
    # every tensor is taken, buffers too (BatchNorm statistics), in their own dtypes
    state, _ = _init_state(still, (1, 2))
    for key, value in source.members[1].state_dict().items():
        assert state[key].dtype == (torch.float32 if value.is_floating_point() else value.dtype)
        torch.testing.assert_close(state[key], value.to(state[key].dtype), msg=key)
    # a member may name its own source; the others start from random weights
    lone = tmp_path / "a" / "member0" / "model"
    listed = [*base, "lr=0", "seed=9", f"members=[{{}}, {{init_from: {lone}}}]"]
    mixed = load_clap(
        str(
            train(
                load_train_config(None, listed),
                tmp_path / "m",
                log=lines.append,
                text_encoder=encoder,
            )
        )
    )
    assert isinstance(mixed, ClapEnsemble)
    start = SmallClap.from_pretrained(lone).state_dict()[weight]
    torch.testing.assert_close(mixed.members[1].state_dict()[weight], start)
    assert not torch.equal(mixed.members[0].state_dict()[weight], start)
    assert "init" not in mixed.metadata["training"]["members"][0]
    # a lone model starts a lone run, and training moves on from its weights; the run
    # resumes from its checkpoint even once the source is gone
    copy = tmp_path / "lone"
    copy.mkdir()
    for name in ("config.json", "model.safetensors"):
        (copy / name).write_bytes((lone / name).read_bytes())
    two = [*_toy_run(tmp_path / "data", 2), f"init_from={copy}", "lr=0.01"]

    def stop_at_epoch_2(line: str) -> None:  # raised before epoch 2's checkpoint is written
        if '"epoch": 2,' in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            load_train_config(None, two), tmp_path / "c", log=stop_at_epoch_2, text_encoder=encoder
        )
    for name in ("config.json", "model.safetensors"):
        (copy / name).unlink()
    tuned = train(
        load_train_config(None, two), tmp_path / "c", log=lines.append, text_encoder=encoder
    )
    assert len((tmp_path / "c" / "log.jsonl").read_text().splitlines()) == 2
    model = SmallClap.from_pretrained(tuned)
    moved = model.state_dict()[weight]
    assert not torch.equal(start, moved)
    assert float((moved - start).abs().mean()) < float(start.abs().mean())
    kept = model.config.metadata["training"]["init"]  # from the checkpoint
    assert kept["from"] == str(copy) and kept["training"]["config"]["seed"] == 0
    assert "recorded_at_export" not in kept
    for bad, message in (
        ([f"init_from={first}"], "ensemble of 2 members: it can start a run of 2 members"),
        ([f"init_from={lone}", "model.channels=[4,6]"], r"does not fit model settings \(channels"),
        ([f"init_from={lone}", "members=2", "model.hop_length=64"], "hop_length 128 vs 64"),
    ):
        with pytest.raises(ConfigError, match=message):
            config = load_train_config(None, [*_toy_run(tmp_path / "data", 1), *bad])
            train(config, tmp_path / "bad", log=lines.append, text_encoder=encoder)
        assert not (tmp_path / "bad").exists()
    with pytest.raises(ModelNotFoundError, match=r"^init_from: "):
        missing = [*_toy_run(tmp_path / "data", 1), f"init_from={tmp_path / 'nowhere'}"]
        train(load_train_config(None, missing), tmp_path / "bad", log=lines.append)
    assert not (tmp_path / "bad").exists()
    # a checkpoint from before runs recorded their start: described from the source at the
    # export (marked so), and resumable again with the same init_from
    ckpt = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)
    for key in ("init", "settings", "step"):  # none of them was kept then
        del ckpt[key]
    (tmp_path / "old").mkdir()
    torch.save(ckpt, tmp_path / "old" / "checkpoint.pt")
    for _ in range(2):  # trained on from the old checkpoint, then found finished
        old = [*_toy_run(tmp_path / "data", 3), f"init_from={lone}", "lr=0.01"]
        done = train(
            load_train_config(None, old), tmp_path / "old", log=lines.append, text_encoder=encoder
        )
        late = SmallClap.from_pretrained(done).config.metadata["training"]["init"]
        assert late["from"] == str(lone) and late["recorded_at_export"] is True
    assert "init" not in torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=True)
    # a checkpoint of another start is not resumed as if it were this one
    for folder, setting, started in (
        ("c", f"init_from={lone}", str(copy)),
        ("a/member0", f"init_from={lone}", "random weights"),
    ):
        with pytest.raises(ConfigError, match=f"started from {re.escape(started)}, but init_from"):
            other = load_train_config(None, [*_toy_run(tmp_path / "data", 3), setting])
            train(other, tmp_path / folder, log=lines.append, text_encoder=encoder)


def test_training_with_text_ridge_exports_the_refitted_head(tmp_path: Path) -> None:
    _write_toy_esc50(tmp_path / "data")
    overrides = _toy_run(
        tmp_path / "data", 2, "train_folds=[1]", "val_folds=[2]", "model.text_mlp=false"
    )
    encoder = HashingTextEncoder(384)
    lines: list[str] = []
    plain = train(
        load_train_config(None, overrides),
        tmp_path / "plain",
        log=lines.append,
        text_encoder=encoder,
    )
    config = load_train_config(None, [*overrides, "text_ridge=0.3"])
    folder = train(config, tmp_path / "ridge", log=lines.append, text_encoder=encoder)
    refit_line = json.loads(lines[-1])
    assert refit_line["text_head_refit"]["penalty"] == 0.3 and "val" in refit_line
    a, b = SmallClap.from_pretrained(plain), SmallClap.from_pretrained(folder)
    assert b.config.metadata["training"]["text_head_refit"]["method"] == "ridge"
    # the same training (same seed), then only the text head differs: it is the refit of a
    for key, value in a.state_dict().items():
        if key.startswith("text_head."):
            assert not torch.allclose(value, b.state_dict()[key]), key
        else:
            torch.testing.assert_close(value, b.state_dict()[key], msg=key)
    a.__dict__["_text_encoder"] = encoder
    refit_text_head(a, load_esc50(tmp_path / "data", [1]), 0.3)
    for key, value in a.text_head.state_dict().items():
        torch.testing.assert_close(value, b.text_head.state_dict()[key], msg=key)
    # text_ridge_more_captions: the same training, the refit on the "more" captions too
    more_config = load_train_config(
        None, [*overrides, "text_ridge=0.3", "text_ridge_more_captions=true"]
    )
    more = SmallClap.from_pretrained(
        train(more_config, tmp_path / "more", log=lines.append, text_encoder=encoder)
    )
    refit_text_head(a, load_esc50(tmp_path / "data", [1]), 0.3, more_captions=True)
    for key, value in more.state_dict().items():
        if key.startswith("text_head."):
            torch.testing.assert_close(value, a.state_dict()[key], msg=key)
            assert not torch.allclose(value, b.state_dict()[key]), key
        else:
            torch.testing.assert_close(value, b.state_dict()[key], msg=key)
    # a bad penalty or an MLP text head is refused before any training
    for bad, message in (
        ("text_ridge=-1", "positive"),
        ("model.text_mlp=true", "linear"),
        ("text_ridge_discriminant=2", r"\[0, 1\]"),
        ("text_ridge_templates=[plain]", "hold"),
    ):
        bad_config = load_train_config(None, [*overrides, "text_ridge=0.3", bad])
        with pytest.raises(ConfigError, match=message):
            train(bad_config, tmp_path / "bad", log=lines.append, text_encoder=encoder)
        assert not (tmp_path / "bad").exists()
    for unused in ("text_ridge_more_captions=true", "text_ridge_templates=['{}']"):
        no_refit = load_train_config(None, [*overrides, unused])
        with pytest.raises(ConfigError, match="needs a text_ridge penalty"):
            train(no_refit, tmp_path / "bad", log=lines.append, text_encoder=encoder)
        assert not (tmp_path / "bad").exists()
    with pytest.raises(ConfigError, match="text_ridge_templates needs a text_ridge penalty"):
        _check_run(load_train_config(None, ["text_ridge_templates=[]"]))
    # a finished run, run again, trains nothing and exports the same refitted weights
    again = train(config, tmp_path / "ridge", log=lines.append, text_encoder=encoder)
    for key, value in SmallClap.from_pretrained(again).state_dict().items():
        torch.testing.assert_close(value, b.state_dict()[key], msg=key)


def test_refit_text_command_writes_a_new_folder_and_refuses_bad_targets(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from querysep.cli.clap_train import add_refit_command

    group = typer.Typer()
    add_refit_command(group)
    group.command("noop")(lambda: None)  # a second command keeps the group's subcommand names
    _write_toy_esc50(tmp_path / "data")
    torch.manual_seed(0)
    source = SmallClap(tiny_config(text_mlp=False)).save_pretrained(tmp_path / "model")
    runner = CliRunner()
    args = [
        "refit-text",
        str(source),
        "--data",
        str(tmp_path / "data"),
        "--fold",
        "1",
        "--fold",
        "2",
    ]
    result = runner.invoke(group, [*args, "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    refitted = SmallClap.from_pretrained(tmp_path / "out")
    assert refitted.config.metadata["text_head_refit"]["folds"] == [1, 2]
    original = SmallClap.from_pretrained(source)
    torch.testing.assert_close(
        refitted.audio.state_dict()["blocks.0.net.0.weight"],
        original.audio.state_dict()["blocks.0.net.0.weight"],
    )
    assert not torch.allclose(refitted.text_head.linear.weight, original.text_head.linear.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "model", "out"]  # no leftovers
    # one class only: every text would map onto one centroid, so it is refused
    lone = tmp_path / "lone"
    (lone / "audio").mkdir(parents=True)
    rows = (tmp_path / "data" / "esc50.csv").read_text().splitlines()
    (lone / "esc50.csv").write_text("\n".join(r for r in rows if not r.endswith(",rain")) + "\n")
    for name in (tmp_path / "data" / "audio").iterdir():
        (lone / "audio" / name.name).symlink_to(name)
    lone_args = ["refit-text", str(source), "--data", str(lone), "--fold", "1", "--fold", "2"]
    result = runner.invoke(group, [*lone_args, "-o", str(tmp_path / "lone-out")])
    assert result.exit_code == 2 and "at least two classes" in result.output, result.output
    assert "these are all 'dog'" in result.output and not (tmp_path / "lone-out").exists()
    shutil.rmtree(lone)

    # the optional refit settings are stored in the written model
    options = ["--discriminant", "0.5", "--template", "{}", "--template", "a {} sound"]
    result = runner.invoke(
        group, [*args, *options, "--audio-views", "2", "-o", str(tmp_path / "views")]
    )
    assert result.exit_code == 0, result.output
    views = SmallClap.from_pretrained(tmp_path / "views")
    assert views.audio_views == 2 and views.config.text_templates == ["{}", "a {} sound"]
    assert views.config.metadata["text_head_refit"]["discriminant"] == 0.5
    assert not torch.allclose(views.text_head.linear.weight, refitted.text_head.linear.weight)
    # refitted again without the options, it keeps its templates and views
    again = ["refit-text", str(tmp_path / "views"), *args[2:], "-o", str(tmp_path / "again")]
    result = runner.invoke(group, again)
    assert result.exit_code == 0, result.output
    kept = SmallClap.from_pretrained(tmp_path / "again")
    assert kept.audio_views == 2 and kept.config.text_templates == ["{}", "a {} sound"]
    # --more-captions fits the classes' "more" phrasings too: more texts, another head
    result = runner.invoke(group, [*args, "--more-captions", "-o", str(tmp_path / "more")])
    assert result.exit_code == 0, result.output
    more = SmallClap.from_pretrained(tmp_path / "more")
    fits = (refitted.config.metadata["text_head_refit"], more.config.metadata["text_head_refit"])
    assert (fits[0]["more_captions"], fits[1]["more_captions"]) == (False, True)
    extra = len(builtin_captions("more")["dog"]) + len(builtin_captions("more")["rain"])
    assert fits[1]["texts"] == fits[0]["texts"] + extra
    assert not torch.allclose(more.text_head.linear.weight, refitted.text_head.linear.weight)

    for name in ("views", "again", "more"):  # keep the leftover check below simple
        shutil.rmtree(tmp_path / name)

    for bad, message in (
        ([*args, "-o", str(tmp_path / "out")], "already exists"),
        (["refit-text", str(tmp_path / "data"), "-o", str(tmp_path / "x")], "not a small-CLAP"),
        ([*args, "--audio-views", "0", "-o", str(tmp_path / "x")], "audio-views"),
        ([*args, "--template", "no slot", "-o", str(tmp_path / "x")], "hold"),
        ([*args, "--discriminant", "1.5", "-o", str(tmp_path / "x")], "discriminant"),
    ):
        result = runner.invoke(group, bad)
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_a_ridge_penalty_that_would_zero_the_stored_head_is_refused(tmp_path: Path) -> None:
    """A penalty so large that the refitted head, stored in the model's weights_dtype, no
    longer embeds the texts (float16 rounds it to zeros) is a one-line error and writes
    nothing; absurd penalties are refused before any work; 1e4-1e6 still refit."""
    import typer
    from typer.testing import CliRunner

    from querysep.cli.clap_train import add_refit_command

    group = typer.Typer()
    add_refit_command(group)
    group.command("noop")(lambda: None)
    _write_toy_esc50(tmp_path / "data")
    torch.manual_seed(0)
    half = SmallClap(tiny_config(text_mlp=False)).save_pretrained(tmp_path / "half", "float16")
    args = ["refit-text", str(half), "--data", str(tmp_path / "data"), "--fold", "1", "--fold", "2"]
    runner = CliRunner()
    for ridge in ("1e4", "1e6"):
        result = runner.invoke(group, [*args, "--ridge", ridge, "-o", str(tmp_path / ridge)])
        assert result.exit_code == 0, result.output
        head = SmallClap.from_pretrained(tmp_path / ridge).text_head.linear.weight
        assert head.abs().max() > 0
    for ridge, message in (
        ("1e8", "too small to store as float16"),
        ("1e9", "up to 1e+08"),
        ("1e308", "up to 1e+08"),
    ):
        result = runner.invoke(group, [*args, "--ridge", ridge, "-o", str(tmp_path / "x")])
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
        assert not (tmp_path / "x").exists()
    # clap train: refused at its refit, after training; the run's checkpoint stays, and a
    # rerun with a smaller penalty only refits
    encoder = HashingTextEncoder(384)
    run = _toy_run(tmp_path / "data", 1, "model.text_mlp=false", "weights_dtype=float16")
    with pytest.raises(ConfigError, match="too small to store as float16"):
        config = load_train_config(None, [*run, "text_ridge=1e8"])
        train(config, tmp_path / "run", log=lambda _: None, text_encoder=encoder)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "log.jsonl"]
    config = load_train_config(None, [*run, "text_ridge=1e4"])
    folder = train(config, tmp_path / "run", log=lambda _: None, text_encoder=encoder)
    assert SmallClap.from_pretrained(folder).text_head.linear.weight.abs().max() > 0
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 1
    with pytest.raises(ConfigError, match="up to 1e"):
        _check_run(load_train_config(None, ["model.text_mlp=false", "text_ridge=1e9"]))


def test_clap_train_cli_commands_wire_into_a_group(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from querysep.cli.clap_train import add_train_command, add_zeroshot_command

    group = typer.Typer()
    add_train_command(group)
    add_zeroshot_command(group)
    _write_toy_esc50(tmp_path / "data")
    runner = CliRunner()
    result = runner.invoke(
        group,
        ["zeroshot", "--clap", "test-tiny", "--data", str(tmp_path / "data"), "--fold", "1"],
    )
    assert result.exit_code == 0, result.output
    assert '"acc_labels"' in result.output and '"roc_auc"' in result.output
    assert runner.invoke(group, ["train", "--help"]).exit_code == 0


def test_clap_ensemble_command_joins_members_in_the_recipes_precision(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from querysep.cli.clap_train import add_train_command

    group = typer.Typer()
    add_train_command(group)
    members = [_random_member(seed).save_pretrained(tmp_path / f"m{seed}") for seed in range(2)]
    recipe = tmp_path / "recipe.yaml"
    model = "model: {n_fft: 256, hop_length: 128, n_mels: 16, channels: [4, 8], dim: 8}\n"
    recipe.write_text(f"epochs: 7\nweights_dtype: float16\n{model}")
    other = tmp_path / "other.yaml"  # the recipe of other members (the defaults' network)
    other.write_text("epochs: 7\n")
    runner = CliRunner()
    args = ["ensemble", *map(str, members), "--config", str(recipe)]
    no_recipe = str(tmp_path / "no.yaml")
    result = runner.invoke(group, [*args, "-o", str(tmp_path / "pair")])
    assert result.exit_code == 0, result.output
    assert "ensemble of 2 members (float16 weights)" in result.output
    pair = load_clap(str(tmp_path / "pair"))
    assert isinstance(pair, ClapEnsemble) and pair.weights_dtype == "float16"
    assert pair.metadata["training"]["config"]["epochs"] == 7
    audio = np.random.default_rng(2).standard_normal((3, 12000)).astype(np.float32)
    sentence = torch.nn.functional.normalize(torch.randn(4, 384), dim=-1)
    alone = [SmallClap.from_pretrained(m) for m in members]
    with torch.no_grad():
        joint = (
            pair.embed_audio(audio, 16000)
            @ pair._join([m.text_features(sentence) for m in pair.members]).T
        )
        each = [
            m.embed_audio(audio, 16000)
            @ torch.nn.functional.normalize(m.text_features(sentence), dim=-1).T
            for m in alone
        ]
    torch.testing.assert_close(joint, (each[0] + each[1]) / 2, rtol=0, atol=1e-3)
    # the recipe's precision can be overridden; float32 reproduces the members exactly
    options = ["--weights-dtype", "float32", "-o", str(tmp_path / "full")]
    assert runner.invoke(group, [*args, *options]).exit_code == 0
    full = ClapEnsemble.from_pretrained(tmp_path / "full")
    for index, member in enumerate(alone):
        for key, value in member.state_dict().items():
            torch.testing.assert_close(full.members[index].state_dict()[key], value, msg=key)
    for bad, message in (
        ([*args, "-o", str(tmp_path / "pair")], "already exists"),
        (
            [
                "ensemble",
                str(tmp_path / "pair"),
                "--config",
                str(recipe),
                "-o",
                str(tmp_path / "x"),
            ],
            "not a single small-CLAP folder",
        ),
        ([*args, "--weights-dtype", "int8", "-o", str(tmp_path / "x")], "weights_dtype must be"),
        (
            ["ensemble", *map(str, members), "--config", no_recipe, "-o", str(tmp_path / "x")],
            "no.yaml",
        ),
        # a recipe of another network was recorded as theirs; a member twice was accepted
        (
            ["ensemble", *map(str, members), "--config", str(other), "-o", str(tmp_path / "x")],
            "was not trained with the recipe's model settings (n_fft 256 vs 1024, hop_length",
        ),
        (
            [
                "ensemble",
                *[str(members[0])] * 2,
                "--config",
                str(recipe),
                "-o",
                str(tmp_path / "x"),
            ],
            "is given twice (also as",
        ),
    ):
        result = runner.invoke(group, bad)
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_module_entry_points_are_the_cli_commands(tmp_path: Path) -> None:
    """`python -m querysep.clap.zeroshot|train` (the model card's commands): the CLI's
    one-line errors and exit 2, and the clap train command hands the paraphraser in."""
    import subprocess
    import sys

    _write_toy_esc50(tmp_path / "data")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    ok = run("querysep.clap.zeroshot", "--clap", "test-tiny", "--data", str(tmp_path / "data"))
    assert ok.returncode == 2 and ok.stderr.strip() == (
        f"querysep: error: no ESC-50 clips in folds [4] under {tmp_path / 'data'}"
    )
    ok = run(
        "querysep.clap.zeroshot",
        "--clap",
        "test-tiny",
        "--data",
        str(tmp_path / "data"),
        "--fold",
        "1",
        "--batch-size",
        "3",
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["folds"] == [1]
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {tmp_path / 'data'}\ntrain_folds: [1]\nloss: bogus\n")
    bad = run("querysep.clap.train", str(config), "-o", str(tmp_path / "run"), "paraphrases=2")
    assert bad.returncode == 2  # the paraphraser was there: the loss is what is refused
    assert bad.stderr.strip() == (
        "querysep: error: loss must be one of infonce, sigmoid, infonce+sigmoid, got 'bogus'"
    )
    assert not (tmp_path / "run").exists()


def test_refit_targets_are_centroids_or_directions_that_separate_better() -> None:
    """Weight 0 gives the unit class centroids exactly; the discriminant direction discounts a
    nuisance shared by all classes, so fresh clips score their own class's target above the
    others' more reliably than with centroids (pooled ROC-AUC)."""
    from querysep.clap.train import refit_targets

    rng = np.random.default_rng(0)
    num_classes, dim, per_class = 4, 8, 60
    means = np.zeros((num_classes, dim))
    means[np.arange(num_classes), np.arange(num_classes)] = 0.6
    means[:, 4] = 1.0  # a shared component: every centroid leans on it
    nuisance = np.zeros(dim)
    nuisance[4] = 1.0

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = np.repeat(np.arange(num_classes), n)
        x = means[labels] + 0.15 * rng.standard_normal((len(labels), dim))
        x += 1.2 * rng.standard_normal((len(labels), 1)) * nuisance  # large within-class spread
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        return torch.from_numpy(unit), torch.from_numpy(labels)

    audio, labels = draw(per_class)
    centroids = refit_targets(audio, labels, num_classes)
    want = np.stack([audio[labels == k].sum(0).numpy() for k in range(num_classes)])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(centroids.numpy(), want, atol=1e-6)
    mixed = refit_targets(audio, labels, num_classes, discriminant=0.7, shrinkage=0.3)
    np.testing.assert_allclose(mixed.norm(dim=1).numpy(), 1.0, atol=1e-12)

    fresh, fresh_labels = draw(200)
    match = fresh_labels.numpy()[:, None] == np.arange(num_classes)[None, :]
    auc_centroid = roc_auc((fresh @ centroids.T).numpy(), match)
    auc_mixed = roc_auc((fresh @ mixed.T).numpy(), match)
    assert auc_mixed > auc_centroid + 0.02, (auc_mixed, auc_centroid)


def test_audio_views_and_text_templates_change_the_embeddings_as_documented(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    plain = SmallClap(tiny_config(text_mlp=False), HashingTextEncoder(384)).eval()
    config = tiny_config(text_mlp=False, audio_views=2, text_templates=["{}", "a {} sound"])
    both = SmallClap(config, HashingTextEncoder(384)).eval()
    both.load_state_dict(plain.state_dict())
    # a one-window clip: the sum of the unit embeddings of it and of it shifted by half
    clip = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    want = torch.nn.functional.normalize(
        plain.embed_audio(clip, 16000) + plain.embed_audio(np.roll(clip, 4000), 16000), dim=-1
    )
    torch.testing.assert_close(both.embed_audio(clip, 16000), want)
    # (the shifted view differs, so views are not ignored: the difference is far above the
    # tolerance of the comparison above)
    assert (both.embed_audio(clip, 16000) - plain.embed_audio(clip, 16000)).abs().max() > 1e-4
    windows, owners = both.prepare_windows(np.tile(clip, 3)[:20000], 16000)
    assert len(windows) == 2 * len(plain.prepare_windows(np.tile(clip, 3)[:20000], 16000)[0])
    assert owners == [0] * len(windows)
    # a text: the head applied to the mean sentence embedding over the templates
    encoder = HashingTextEncoder(384)
    texts = ["dog", "rain on a roof"]
    mean = (encoder.encode(texts) + encoder.encode(["a dog sound", "a rain on a roof sound"])) / 2
    with torch.no_grad():
        expected = torch.nn.functional.normalize(both.text_features(mean), dim=-1)
    torch.testing.assert_close(both.embed_text(texts), expected)
    # stored in the folder, so a reload embeds the same way
    both.save_pretrained(tmp_path / "m")
    loaded = SmallClap.from_pretrained(tmp_path / "m")
    assert loaded.audio_views == 2 and loaded.config.text_templates == ["{}", "a {} sound"]
    torch.testing.assert_close(loaded.embed_audio(clip, 16000), both.embed_audio(clip, 16000))
    # malformed settings, and ensembles of members that embed differently, are refused
    for bad, message in (
        ({"audio_views": 0}, "audio_views"),
        ({"audio_views": 2.5}, "audio_views"),
        ({"text_templates": []}, "text_templates"),
        ({"text_templates": ["{} and {}"]}, "text_templates"),
    ):
        with pytest.raises(ConfigError, match=message):
            tiny_config(**bad)
    with pytest.raises(ConfigError, match="audio_views, text_templates"):
        ClapEnsemble([plain, both])


def test_esc50_folder_problems_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no esc50\.csv in .*nowhere \(give the ESC-50 folder"):
        load_esc50(tmp_path / "nowhere", [4])
    _write_toy_esc50(tmp_path / "data")
    table = tmp_path / "data" / "esc50.csv"
    good = table.read_text()
    table.write_text(good.replace("category", "label"))
    with pytest.raises(DataError, match=r"esc50\.csv: missing column\(s\) category$"):
        load_esc50(tmp_path / "data", [1])
    table.write_text(good.replace(",1,0,dog", ",one,0,dog"))
    with pytest.raises(DataError, match="a fold or target is not an integer"):
        load_esc50(tmp_path / "data", [1])
    lines = good.splitlines()  # the last clip's target also under another name
    last = lines[-1].split(",")
    last[-1] = "not-" + last[-1]
    table.write_text("\n".join([*lines[:-1], ",".join(last)]) + "\n")
    with pytest.raises(DataError, match=r"esc50\.csv: target 1 is both 'rain' and 'not-rain'$"):
        load_esc50(tmp_path / "data", [1])
    table.write_text(good)
    first = sorted((tmp_path / "data" / "audio").iterdir())[0]
    first.unlink()
    with pytest.raises(AudioError, match=f"{first.name}"):
        load_esc50(tmp_path / "data", [1, 2])
    split = load_esc50(tmp_path / "data", [2])  # the other fold still loads
    assert split.categories == ["dog", "rain"] and len(split.filenames) == 4


def test_zeroshot_refuses_data_it_cannot_score(tmp_path: Path) -> None:
    """One class only (no mismatched pairs), targets that skip a number, a category that is
    no ESC-50 class: one-line DataErrors, not a ValueError or KeyError from inside."""
    from querysep.clap.zeroshot import evaluate_zeroshot, load_esc50

    _write_toy_esc50(tmp_path / "toy")
    model = load_clap("test-tiny")
    one_class = load_esc50(tmp_path / "toy", [1])
    one_class = replace(one_class, targets=np.zeros_like(one_class.targets))
    with pytest.raises(DataError, match="all of one class"):
        evaluate_zeroshot(model, one_class)
    other = replace(one_class, categories=["dog", "spaceship"], targets=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="'spaceship' is not an ESC-50 class"):
        evaluate_zeroshot(model, other)
    table = (tmp_path / "toy" / "esc50.csv").read_text().replace(",1,rain", ",5,rain")
    (tmp_path / "toy" / "esc50.csv").write_text(table)
    with pytest.raises(DataError, match=r"number the 2 categories 0\.\.1, found 0\.\.5"):
        load_esc50(tmp_path / "toy", [1])
    # a header without rows has its columns (it said they were missing), a short row is named
    (tmp_path / "toy" / "esc50.csv").write_text("filename,fold,target,category\n")
    with pytest.raises(DataError, match=r"no ESC-50 clips in folds \[1\]"):
        load_esc50(tmp_path / "toy", [1])
    good = table.replace(",5,rain", ",1,rain")  # folds 1 and 2: a fold 9 was ignored
    (tmp_path / "toy" / "esc50.csv").write_text(good)
    with pytest.raises(DataError, match=r"no ESC-50 clips in fold 9 under .* \(folds \[1, 9\]"):
        load_esc50(tmp_path / "toy", [1, 9])
    (tmp_path / "toy" / "esc50.csv").write_text(table + "1-9-A-0.flac,1\n")
    with pytest.raises(DataError, match=r"esc50\.csv:10: no target \(a short or blank row\)"):
        load_esc50(tmp_path / "toy", [1])
    # a clip listed twice, silent or too short counted in the figures (ats refuses the last two)
    table = table.replace(",5,rain", ",1,rain")
    first = table.splitlines()[1]
    (tmp_path / "toy" / "esc50.csv").write_text(f"{table.rstrip()}\n{first}\n")
    with pytest.raises(DataError, match=rf"{re.escape(first.split(',')[0])} is listed twice"):
        load_esc50(tmp_path / "toy", [1])
    (tmp_path / "toy" / "esc50.csv").write_text(table)
    load_esc50(tmp_path / "toy", [1])  # the table as it was is fine
    clip = tmp_path / "toy" / "audio" / first.split(",")[0]
    sf.write(clip, np.zeros(16000, np.float32), 16000)
    with pytest.raises(SilentAudioError, match=r"silent .*: it has no audio-text score"):
        load_esc50(tmp_path / "toy", [1])
    sf.write(clip, np.ones(160, np.float32) * 0.1, 16000)
    with pytest.raises(AudioError, match=r"160 samples at 16000 Hz \(10 ms\) is too short"):
        load_esc50(tmp_path / "toy", [1])


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("lr=-1", "lr must be a finite number >= 0"),
        ("lr=.nan", "lr must be a finite number >= 0"),
        ("model.dropout=1.5", r"model\.dropout: must be in \[0, 1\)"),
        ("model.f_max=9000", r"model\.f_max: .*f_max <= sample_rate / 2 \(8000\)"),
        ("model.window_seconds=0", r"model\.window_seconds: must be a positive number"),
        ("model.n_mels=2", r"model\.n_mels: 2 is too few for 2 pooling blocks"),
        ("model.n_fft=9000", r"model\.n_fft: 9000 is longer than a window of 0\.5 s \(8000"),
        ("model.n_fft=100000", r"model\.n_fft: must be at most 65536, got 100000"),
        ("model.hop_length=512", r"model\.hop_length: 512 is more than n_fft \(256\)"),
        ("val_folds=[2]", r"val_folds \[2\] share fold 2 with train_folds \[1, 2\]"),
        ("augment.mixup_alpha=0", "mixup_alpha must be positive"),
        ("augment.crop_seconds=0", "crop_seconds must be positive"),
        ("augment.crop_seconds=0.02", r"crop_seconds 0\.02 gives 2 frames, too few"),
        ("augment.noise_snr_db=[40,10]", r"noise_snr_db must be \[low, high\]"),
        ("ema_decay=1", r"ema_decay must be a number in \[0, 1\)"),
        ("min_lr_ratio=2", r"min_lr_ratio must be a number in \[0, 1\]"),
        ("seed=20000000000000", r"seed must be a whole number of magnitude < 2\*\*40"),
        ("members=[{}, {precision: fp16}]", "precision must be auto, 32 or bf16-mixed"),
        ("members=[{}, {model: {window_seconds: 1.0}}]", r"members\[1\] differs .*window_seconds"),
        ("model.text_dim=128", "the sentence encoder gives 384-d embeddings"),
        ("batch_size=16", "batch_size 16 is more than the 8 training clips"),
        ("restart_epochs=1", r"restart_epochs \(1\) must be fewer than epochs \(1\)"),
        ("restart_epochs=-1", "restart_epochs must be >= 0"),
    ],
)
def test_training_refuses_bad_settings_in_one_line_and_leaves_no_folder(
    tmp_path: Path, bad: str, message: str
) -> None:
    """Each bad value is a one-line ConfigError before any member trains (once the data is
    read for the last two) and leaves no output folder, not a traceback from inside."""
    _write_toy_esc50(tmp_path / "data")
    with pytest.raises(ConfigError, match=message) as caught:
        config = load_train_config(None, _toy_run(tmp_path / "data", 1, bad))
        train(config, tmp_path / "run", log=lambda line: None, text_encoder=HashingTextEncoder(384))
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_training_resumes_only_with_its_own_settings(tmp_path: Path) -> None:
    """A checkpoint keeps the settings it was trained with: a resume that changes one of them
    (epochs, lr, a member's seed) is refused and names it; the refit's settings may change."""
    _write_toy_esc50(tmp_path / "data")
    encoder = HashingTextEncoder(384)
    run = _toy_run(tmp_path / "data", 2, "model.text_mlp=false")
    train(load_train_config(None, run), tmp_path / "run", log=lambda _: None, text_encoder=encoder)
    for changed, shown in (
        ("epochs=3", "epochs 2 -> 3"),
        ("lr=0.5", "lr 0.002 -> 0.5"),
        ("augment.gain_db=3", "augment.gain_db 6.0 -> 3.0"),
    ):
        with pytest.raises(ConfigError, match=f"other settings \\({re.escape(shown)}\\)"):
            train(
                load_train_config(None, [*run, changed]),
                tmp_path / "run",
                log=lambda _: None,
                text_encoder=encoder,
            )
    refitted = train(
        load_train_config(None, [*run, "text_ridge=0.3"]),
        tmp_path / "run",
        log=lambda _: None,
        text_encoder=encoder,
    )
    meta = SmallClap.from_pretrained(refitted).config.metadata
    assert meta["training"]["text_head_refit"]["penalty"] == 0.3
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 2
    # A setting added to querysep after a checkpoint was written counts as its default there:
    # the restart settings, absent from this (doctored) checkpoint, may stay at theirs...
    ckpt_path = tmp_path / "run" / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    for key in ("restart_epochs", "restart_lr", "restart_warmup_epochs"):
        ckpt["settings"].pop(key, None)
    torch.save(ckpt, ckpt_path)
    same = [*run, "restart_lr=0.5"]  # restart settings do nothing without restart_epochs
    train(load_train_config(None, same), tmp_path / "run", log=lambda _: None, text_encoder=encoder)
    restart = ["restart_epochs=1", "restart_warmup_epochs=1", "warmup_epochs=1"]
    with pytest.raises(ConfigError, match=r"other settings \(restart_epochs 0 -> 1; "):
        train(  # ...but a restart would change the schedule the run trained with
            load_train_config(None, [*run, *restart]),
            tmp_path / "run",
            log=lambda _: None,
            text_encoder=encoder,
        )
    members = [*run, "members=2"]
    train(
        load_train_config(None, members), tmp_path / "ens", log=lambda _: None, text_encoder=encoder
    )
    with pytest.raises(ConfigError, match=r"member1.*seed 1 -> 5"):
        train(
            load_train_config(None, [*run, "members=[{}, {seed: 5}]"]),
            tmp_path / "ens",
            log=lambda _: None,
            text_encoder=encoder,
        )


def test_a_run_resumes_only_on_its_own_training_clips(tmp_path: Path) -> None:
    """The checkpoint keeps what the run trains on (clip names, sizes, classes): a moved data
    folder resumes, other clips are refused and the finished model stays; a checkpoint from
    before runs kept them resumes as before."""
    import shutil

    _write_toy_esc50(tmp_path / "data")
    encoder = HashingTextEncoder(384)

    def run_on(data: Path) -> Path:
        config = load_train_config(None, _toy_run(data, 1))
        return train(config, tmp_path / "run", log=lambda _: None, text_encoder=encoder)

    model = (run_on(tmp_path / "data") / "model.safetensors").read_bytes()
    shutil.copytree(tmp_path / "data", tmp_path / "moved")
    run_on(tmp_path / "moved")
    longer, relabelled = tmp_path / "longer", tmp_path / "relabelled"
    for copy in (longer, relabelled):
        shutil.copytree(tmp_path / "data", copy)
    audio, rate = sf.read(longer / "audio" / "1-2-A-0.flac", dtype="float32")
    sf.write(longer / "audio" / "1-2-A-0.flac", np.tile(audio, 2), rate)  # re-recorded
    table = relabelled / "esc50.csv"  # one clip in another class
    table.write_text(table.read_text().replace("1-2-A-0.flac,1,0,dog", "1-2-A-0.flac,1,1,rain"))
    for data, example in (
        (longer, r"1-2-A-0\.flac is \d+ bytes, was \d+"),
        (relabelled, r"1-2-A-0\.flac is class 1, was 0"),
    ):
        with pytest.raises(
            ConfigError, match=rf"trained on other clips \(1 differ, e.g. {example}\)"
        ):
            run_on(data)
        assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == model
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    del checkpoint["clips"]  # as written before runs kept their clips
    torch.save(checkpoint, tmp_path / "run" / "checkpoint.pt")
    run_on(longer)


def test_a_cut_run_logs_what_its_checkpoint_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupt after an epoch is logged but before its checkpoint leaves a log of the
    checkpointed epochs only; a checkpoint write that fails leaves the last whole one and no
    partial file; a resume rewrites the log from its checkpoint and logs each epoch once."""
    _write_toy_esc50(tmp_path / "data")
    config = load_train_config(None, _toy_run(tmp_path / "data", 3))
    encoder = HashingTextEncoder(384)

    def stop_at_epoch_2(line: str) -> None:  # raised before epoch 2's checkpoint is written
        if '"epoch": 2,' in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", log=stop_at_epoch_2, text_encoder=encoder)
    log = tmp_path / "cut" / "log.jsonl"
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == [1]
    real_save = torch.save

    def disk_full(obj: Any, path: Any) -> None:
        Path(path).write_bytes(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch, pytest.raises(OSError, match="No space left"):
        patch.setattr(torch, "save", disk_full)
        train(config, tmp_path / "cut", log=lambda _: None, text_encoder=encoder)
    assert not (tmp_path / "cut" / "checkpoint.tmp").exists()
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert torch.save is real_save
    with open(log, "a", encoding="utf-8") as fh:  # as if an epoch had been logged, not kept
        fh.write('{"epoch": 2, "stray": true}\n')
    train(config, tmp_path / "cut", log=lambda _: None, text_encoder=encoder)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert not any("stray" in r for r in records)


def test_a_max_steps_run_cut_mid_epoch_resumes_without_new_records(tmp_path: Path) -> None:
    _write_toy_esc50(tmp_path / "data")  # 8 clips, batch 4: 2 steps an epoch
    config = load_train_config(None, _toy_run(tmp_path / "data", 5, "max_steps=3"))
    encoder = HashingTextEncoder(384)
    for _ in range(2):  # the second run finds the run finished
        train(config, tmp_path / "run", log=lambda _: None, text_encoder=encoder)
        records = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
        assert [(r["epoch"], r["step"]) for r in records] == [(1, 2), (2, 3)]
        assert all(r["loss"] is not None for r in records)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 3


def test_a_diverging_run_stops_at_its_first_non_finite_value_and_keeps_its_checkpoint(
    tmp_path: Path,
) -> None:
    """A loss or weight that stops being finite ends the run in one line: the checkpoint
    keeps the last good epoch (and resumes), the log holds valid JSON only, no model is
    exported; NaN weights are never saved, nor started from."""
    from safetensors.torch import load_file, save_file

    _write_toy_esc50(tmp_path / "data")
    encoder = HashingTextEncoder(384)
    # two good epochs, then a warm restart to an absurd rate over the last one
    blowup = ["restart_epochs=1", "restart_warmup_epochs=1", "warmup_epochs=1"]
    config = load_train_config(None, _toy_run(tmp_path / "data", 3, *blowup, "restart_lr=1e12"))
    diverged = r"^training diverged at epoch 3, step \d+: .*keeps the last good epoch, 2\)"
    for _ in range(2):  # run again, it resumes from epoch 2 and stops at the same place
        with pytest.raises(ConfigError, match=diverged) as caught:
            train(config, tmp_path / "run", log=lambda _: None, text_encoder=encoder)
        assert "\n" not in str(caught.value)
        kept = sorted(p.name for p in (tmp_path / "run").iterdir())
        assert kept == ["checkpoint.pt", "log.jsonl"]  # no model
        checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
        assert checkpoint["epoch"] == 2
        assert all(torch.isfinite(v).all() for v in checkpoint["model"].values())
        lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    # with validation after each epoch too: the divergence is named, not the NaN scores
    validated = [*blowup, "restart_lr=1e12", "train_folds=[1]", "val_folds=[2]", "val_every=1"]
    with pytest.raises(ConfigError, match=diverged):
        train(
            load_train_config(None, _toy_run(tmp_path / "data", 3, *validated)),
            tmp_path / "validated",
            log=lambda _: None,
            text_encoder=encoder,
        )
    # a run that diverges before its first checkpoint leaves no folder
    wild = load_train_config(None, _toy_run(tmp_path / "data", 3, "lr=1e12"))
    with pytest.raises(ConfigError, match="training diverged at epoch 1"):
        train(wild, tmp_path / "wild", log=lambda _: None, text_encoder=encoder)
    assert not (tmp_path / "wild").exists()
    # a model holding a NaN is not saved, and not started from
    torch.manual_seed(0)
    model = SmallClap(tiny_config())
    with torch.no_grad():
        model.audio_head[3].bias[0] = float("nan")
    with pytest.raises(CheckpointError, match=r"weight audio_head\.3\.bias holds NaN"):
        model.save_pretrained(tmp_path / "nan")
    assert not (tmp_path / "nan").exists()
    folder = SmallClap(tiny_config()).save_pretrained(tmp_path / "nan")
    state = load_file(str(folder / "model.safetensors"))
    state["audio_head.3.bias"][0] = float("nan")
    save_file(state, str(folder / "model.safetensors"))
    start = load_train_config(None, _toy_run(tmp_path / "data", 1, f"init_from={folder}"))
    with pytest.raises(CheckpointError, match=r"^init_from .*audio_head\.3\.bias holds NaN"):
        train(start, tmp_path / "tuned", log=lambda _: None, text_encoder=encoder)
    assert not (tmp_path / "tuned").exists()


def test_training_resamples_clips_to_the_model_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_toy_esc50(tmp_path / "data")
    for clip in (tmp_path / "data" / "audio").iterdir():  # the same 1 s clips at 32 kHz
        audio, rate = sf.read(clip, dtype="float32")
        sf.write(clip, np.repeat(audio, 2), 2 * rate)
    import querysep.clap.train as training

    seen: list[int] = []
    real = training._mel_power

    def spy(model: SmallClap, audio: np.ndarray, chunk: int = 64) -> torch.Tensor:
        seen.append(audio.shape[-1])
        return real(model, audio, chunk)

    monkeypatch.setattr(training, "_mel_power", spy)
    config = load_train_config(None, _toy_run(tmp_path / "data", 1))
    train(config, tmp_path / "run", log=lambda _: None, text_encoder=HashingTextEncoder(384))
    assert seen == [16000]  # 1 s at the model's 16 kHz, not 32000 samples read as 16 kHz


def test_training_on_a_category_without_captions_is_one_line(tmp_path: Path) -> None:
    _write_toy_esc50(tmp_path / "data")
    table = tmp_path / "data" / "esc50.csv"
    table.write_text(table.read_text().replace(",rain", ",spaceship"))
    config = load_train_config(None, _toy_run(tmp_path / "data", 1))
    with pytest.raises(DataError, match="no training captions for the category 'spaceship'"):
        train(config, tmp_path / "run", log=lambda _: None, text_encoder=HashingTextEncoder(384))
    assert not (tmp_path / "run").exists()


def test_an_ensemble_of_one_starts_a_lone_run(tmp_path: Path) -> None:
    _write_toy_esc50(tmp_path / "data")
    encoder = HashingTextEncoder(384)
    lone = train(
        load_train_config(None, _toy_run(tmp_path / "data", 1)),
        tmp_path / "a",
        log=lambda _: None,
        text_encoder=encoder,
    )
    one = export_ensemble(load_train_config(None, _TOY_MODEL), [lone], tmp_path / "one")
    run = _toy_run(tmp_path / "data", 1, f"init_from={one}", "lr=0", "warmup_epochs=0")
    out = train(
        load_train_config(None, run), tmp_path / "b", log=lambda _: None, text_encoder=encoder
    )
    weight = "audio.blocks.0.net.0.weight"
    torch.testing.assert_close(
        SmallClap.from_pretrained(out).state_dict()[weight],
        SmallClap.from_pretrained(lone).state_dict()[weight],
    )


def test_small_clap_config_refuses_values_the_network_cannot_use() -> None:
    # f_max alone is a valid edge, so f_min is named (and the numbers shown as written)
    with pytest.raises(
        ConfigError, match=r"^f_min: must satisfy .* got f_min 4000 and f_max 3000$"
    ):
        tiny_config(f_min=4000.0, f_max=3000.0)
    with pytest.raises(ConfigError, match=r"^f_max: must satisfy .* got f_min 0 and f_max inf$"):
        tiny_config(f_min=0.0, f_max=float("inf"))
    with pytest.raises(ConfigError, match=r"^f_max: must satisfy .* and f_max 'high'$"):
        tiny_config(f_max="high")
    with pytest.raises(ConfigError, match=r"^window_seconds: 0\.01 gives 2 frames"):
        tiny_config(window_seconds=0.01)
    with pytest.raises(ConfigError, match=r"^channels: must be whole numbers"):
        tiny_config(channels=[])
    with pytest.raises(ConfigError, match=r"^hop_length: must be a whole number >= 1"):
        tiny_config(hop_length=0)
    # every mel band must hold an FFT bin, or its feature is always 0
    with pytest.raises(ConfigError, match=r"^n_fft: 32 gives FFT bins 500 Hz apart, too coarse"):
        tiny_config(n_fft=32, hop_length=16)
    with pytest.raises(ConfigError, match=r": band 0 \(about \d+ Hz\) holds none; use a larger"):
        tiny_config(n_fft=32, hop_length=16)  # the band is named with its frequency
    tiny_config(n_fft=64, hop_length=16)  # 250 Hz apart: each of the 16 bands holds one
    with pytest.raises(ConfigError, match=r"^n_mels: 40 is more than the 33 FFT bins of n_fft 64"):
        tiny_config(n_fft=64, hop_length=16, n_mels=40)
    assert tiny_config().n_mels == 16  # the tests' own small network passes


def test_mixup_alpha_is_free_while_mixup_is_off(tmp_path: Path) -> None:
    _write_toy_esc50(tmp_path / "data")
    run = _toy_run(tmp_path / "data", 1, "augment.mixup_prob=0", "augment.mixup_alpha=0")
    train(
        load_train_config(None, run),
        tmp_path / "run",
        log=lambda _: None,
        text_encoder=HashingTextEncoder(384),
    )
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_a_warm_restart_is_a_second_cycle_over_the_last_epochs() -> None:
    """restart_epochs: the schedule of a fine-tune from the first cycle's weights, in one run."""
    from querysep.clap.train import _lr_lambda

    def factors(*overrides: str) -> list[float]:
        base = ["epochs=10", "lr=0.003", "warmup_epochs=2", "min_lr_ratio=0.01"]
        schedule = _lr_lambda(load_train_config(None, [*base, *overrides]), 5)
        return [schedule(step) for step in range(50)]

    one = factors()
    assert one[0] == pytest.approx(0.1) and one[9] == pytest.approx(1.0)  # 2 warm-up epochs
    assert 0.01 < one[49] < 0.012  # cosine down to min_lr_ratio (reached a step later)
    two = factors("restart_epochs=4", "restart_lr=0.001", "restart_warmup_epochs=1")
    assert two[:10] == one[:10]  # the same warm-up...
    assert 0.01 < two[29] < 0.017 and two[20] < one[20]  # ...a shorter first cycle
    assert two[30] == pytest.approx(0.2 / 3)  # warm-up again, to restart_lr / lr = 1/3
    assert two[34] == pytest.approx(1 / 3)
    assert 0.01 / 3 < two[49] < 0.007
    assert all(a >= b for a, b in itertools.pairwise(two[34:]))  # then decays
    with pytest.raises(ConfigError, match="restart_lr must be a positive number"):
        _check_run(load_train_config(None, ["epochs=10", "restart_epochs=2", "restart_lr=0"]))
    with pytest.raises(ConfigError, match=r"warmup_epochs \(5\) must be at most the 4 epochs"):
        _check_run(load_train_config(None, ["epochs=10", "restart_epochs=6", "warmup_epochs=5"]))
    with pytest.raises(ConfigError, match=r"restart_warmup_epochs \(3\) must be at most"):
        _check_run(
            load_train_config(None, ["epochs=10", "restart_epochs=2", "restart_warmup_epochs=3"])
        )


def test_training_into_a_folder_another_run_holds_is_refused(tmp_path: Path) -> None:
    from querysep.errors import OutputError
    from querysep.fileio import locked_folder

    _write_toy_esc50(tmp_path / "data")
    encoder = HashingTextEncoder(384)
    run = tmp_path / "run"
    config = load_train_config(None, _toy_run(tmp_path / "data", 1, "members=2"))
    with locked_folder(run, "clap train"):
        with pytest.raises(OutputError, match="in use by another running querysep clap train"):
            train(config, run, log=lambda _: None, text_encoder=encoder)
        assert list(run.iterdir()) == []
    train(config, run, log=lambda _: None, text_encoder=encoder)  # free again: it trains
    assert sorted(p.name for p in run.iterdir()) == ["member0", "member1", "model"]


def test_training_into_another_commands_run_folder_is_refused(tmp_path: Path) -> None:
    """A 'querysep train' or 'ldm train-vae' run folder: this run wrote its model into
    that run's model/. A config.yaml alone (the user's own recipe) is no such folder."""
    from querysep.errors import OutputError

    _write_toy_esc50(tmp_path / "data")
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    (run / "checkpoints").mkdir()
    config = load_train_config(None, _toy_run(tmp_path / "data", 1))
    with pytest.raises(OutputError, match="holds another command's training run"):
        train(config, run, log=lambda _: None, text_encoder=HashingTextEncoder(384))
    assert (run / "model" / "config.json").read_text() == "{}"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("epochs: 1\n")
    train(config, mine, log=lambda _: None, text_encoder=HashingTextEncoder(384))
    assert (mine / "model").is_dir()


def test_the_folds_a_model_was_trained_on_are_known() -> None:
    from querysep.clap.zeroshot import seen_folds

    assert seen_folds(load_clap("esc50-clap")) == {1, 2, 3}  # metadata.training.config
    assert seen_folds(load_clap("test-tiny")) == set()
    refit = type("M", (), {"metadata": {"text_head_refit": [{"folds": [4]}, {"folds": [4]}]}})
    assert seen_folds(refit()) == {4}


def test_what_the_training_clips_do_not_allow_is_refused_before_any_member_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The training split is read once for all members and checked against each one's
    batch size, and against the refit's need of every class, before any member trains."""
    import querysep.clap.train as training

    _write_toy_esc50(tmp_path / "data")  # 8 clips
    encoder = HashingTextEncoder(384)
    reads: list[list[int]] = []
    real = training.load_esc50

    def counted(root: Any, folds: list[int]) -> Esc50Split:
        reads.append(list(folds))
        return real(root, folds)

    monkeypatch.setattr(training, "load_esc50", counted)
    two = _toy_run(tmp_path / "data", 1, "members=2")
    train(load_train_config(None, two), tmp_path / "ok", log=lambda _: None, text_encoder=encoder)
    assert reads == [[1, 2]]
    narrow = _toy_run(tmp_path / "data", 1, "members=[{}, {batch_size: 9}]")
    with pytest.raises(ConfigError, match=r"^members\[1\]: batch_size 9 is more than the 8"):
        train(load_train_config(None, narrow), tmp_path / "run", log=lambda _: None)
    assert not (tmp_path / "run").exists()  # member0 never trained
    table = tmp_path / "data" / "esc50.csv"  # the rain clips move to fold 3
    table.write_text(re.sub(r",\d,1,rain", ",3,1,rain", table.read_text()))
    for extra in ([], ["members=2"]):
        ridge = _toy_run(tmp_path / "data", 1, "model.text_mlp=false", "text_ridge=0.3", *extra)
        with pytest.raises(ConfigError, match=r"refit needs clips of every class.*none of 'rain'"):
            train(load_train_config(None, ridge), tmp_path / "run", log=lambda _: None)
        assert not (tmp_path / "run").exists()


def test_an_output_folder_of_another_kind_of_run_or_with_paths_in_the_way_is_refused(
    tmp_path: Path,
) -> None:
    """A finished ensemble is not replaced by a one-model run into its folder, nor the reverse,
    and a path in the way of a run's files is refused: each before anything trains."""
    import shutil

    _write_toy_esc50(tmp_path / "data")
    encoder = HashingTextEncoder(384)
    one, two = (_toy_run(tmp_path / "data", 1, f"members={n}") for n in (1, 2))
    listed = _toy_run(tmp_path / "data", 1, "members=[{}]")
    for first, then, message in (
        (two, one, "holds the runs of an ensemble's members"),
        (one, two, "holds the run of one model"),
        (one, listed, "holds the run of one model"),
    ):
        out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        train(load_train_config(None, first), out, log=lambda _: None, text_encoder=encoder)
        before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
        with pytest.raises(OutputError, match=f"{message}.*another output folder") as caught:
            train(load_train_config(None, then), out, log=lambda _: None, text_encoder=encoder)
        assert "\n" not in str(caught.value)
        assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    for blocker, config, message in (
        ("model", one, "model is a file, not a folder"),
        ("checkpoint.pt/", one, "checkpoint.pt: it is a folder"),
        ("log.jsonl/", one, "log.jsonl: it is a folder"),
        ("model", two, "model is a file, not a folder"),
        ("member1/model", two, "model is a file, not a folder"),
        ("member1/checkpoint.tmp/", two, "checkpoint.tmp: it is a folder"),
    ):
        out = tmp_path / "blocked"
        path = out / blocker
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if blocker.endswith("/") else path.write_text("x")
        before = sorted(p.relative_to(out) for p in out.rglob("*"))
        with pytest.raises(OutputError, match=message):
            train(load_train_config(None, config), out, log=lambda _: None, text_encoder=encoder)
        assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing trained
        shutil.rmtree(out)


def test_a_trained_model_is_named_by_its_config_or_its_run_folder(tmp_path: Path) -> None:
    """Not every trained model is esc50-clap: the name setting, else the run's folder, names
    the model (members: that name and -member{i}); the shipped recipes name esc50-clap."""
    _write_toy_esc50(tmp_path / "data")
    encoder = HashingTextEncoder(384)
    lone = _toy_run(tmp_path / "data", 1)
    folder = train(
        load_train_config(None, lone),
        tmp_path / "toy-run",
        log=lambda _: None,
        text_encoder=encoder,
    )
    assert load_clap(str(folder)).name == "toy-run"
    assert SmallClap.from_pretrained(folder).config.metadata["name"] == "toy-run"
    # a name given (or changed on a rerun: the finished run is only exported again)
    named = load_train_config(None, [*lone, "name=my clap"])
    folder = train(named, tmp_path / "toy-run", log=lambda _: None, text_encoder=encoder)
    assert load_clap(str(folder)).name == "my clap"
    assert len((tmp_path / "toy-run" / "log.jsonl").read_text().splitlines()) == 1
    two = load_train_config(None, [*lone, "members=2"])
    ensemble = load_clap(
        str(train(two, tmp_path / "pair", log=lambda _: None, text_encoder=encoder))
    )
    assert ensemble.name == "pair"
    assert load_clap(str(tmp_path / "pair" / "member1" / "model")).name == "pair-member1"
    padded = train(  # a folder name is made one unpadded line, not refused as a bad name
        load_train_config(None, lone),
        tmp_path / " my  run ",
        log=lambda _: None,
        text_encoder=encoder,
    )
    assert load_clap(str(padded)).name == "my run"
    members = [tmp_path / "pair" / f"member{i}" / "model" for i in range(2)]
    assert (
        load_clap(
            str(export_ensemble(load_train_config(None, lone), members, tmp_path / "joined"))
        ).name
        == "joined"
    )
    for recipe in ("esc50-clap.yaml", "esc50-clap-finetune.yaml"):
        path = Path(__file__).parents[2] / "configs" / recipe
        assert load_train_config(str(path)).name == "esc50-clap"
    for bad, message in (
        ("name=''", "name must be one line of text"),
        ('name="a\\nb"', "name must be one line of text"),
        ("members=[{name: x}]", "may set only"),
    ):
        with pytest.raises(ConfigError, match=message):
            train(load_train_config(None, [*lone, bad]), tmp_path / "bad", log=lambda _: None)
        assert not (tmp_path / "bad").exists()


def test_a_colon_number_is_text_not_a_base_60_integer(tmp_path: Path) -> None:
    """YAML 1.1 reads ``1:30`` as 90; querysep's configs read it as the text it looks like,
    so a slip is a one-line error instead of a silent 90 epochs."""
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 1:30\n", encoding="utf-8")
    for args in ((str(path), []), (None, ["epochs=1:30"])):
        with pytest.raises(ConfigError, match="epochs") as caught:
            load_train_config(*args)
        assert "\n" not in str(caught.value)


def test_zeroshot_on_a_fold_the_model_trained_on_says_so(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from querysep.cli import app

    _write_toy_esc50(tmp_path / "toy")  # folds 1 and 2; esc50-clap trained on folds 1-3
    runner = CliRunner()
    seen = runner.invoke(app, ["clap", "zeroshot", "--data", str(tmp_path / "toy"), "--fold", "1"])
    assert seen.exit_code == 0, seen.output
    assert "trained (or its text head refitted) on fold 1: those scores are not held-out" in (
        seen.stderr
    )  # was: perfect scores and no word
    tiny = ["clap", "zeroshot", "--clap", "test-tiny", "--data", str(tmp_path / "toy")]
    other = runner.invoke(app, [*tiny, "--fold", "1", "--fold", "1"])
    assert other.exit_code == 0 and "not held-out" not in other.stderr
    assert '"folds": [\n    1\n  ]' in other.stdout  # a fold given twice is scored once
