"""Weights: safetensors round trip, checksums, tamper detection, pickle refusal, Hub staging."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from torch import nn

from fdin.errors import ModelUnavailableError, WeightsIntegrityError
from fdin.models.pretrained import load_pretrained
from fdin.models.registry import create_model, register_model
from fdin.weights import (
    ModelCard,
    read_checksums,
    resolve_weights,
    save_pretrained,
    stage_for_hub,
    verify_weights_dir,
)


@register_model("_test_tiny")
def _tiny(width: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(width, 2), nn.Tanh())


CARD = ModelCard(title="tiny", summary="test model", trained_on="nothing", synthetic_training_data=True,
                 metrics={"accuracy": 0.5})


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = create_model("_test_tiny", width=4)
    out = save_pretrained(model, tmp_path / "tiny", architecture="_test_tiny", model_args={"width": 4}, card=CARD)
    return model, out


def test_round_trip_restores_identical_outputs(saved):
    model, out = saved
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "SHA256SUMS", "config.json", "model.safetensors"]
    loaded = load_pretrained(out)
    x = torch.randn(5, 4)
    assert torch.equal(model(x), loaded.model(x))
    assert not loaded.model.training
    assert loaded.config["synthetic_training_data"] is True
    assert loaded.provenance()["trained_on"] == "nothing"


def test_card_says_generated_data(saved):
    _, out = saved
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: fdin")
    assert "not on real people" in card
    assert "| accuracy | 0.5 |" in card


def test_tampered_weights_fail_loudly(saved):
    _, out = saved
    blob = bytearray((out / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (out / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(WeightsIntegrityError, match="does not match its recorded SHA-256"):
        load_pretrained(out)


def test_tampered_config_fails(saved):
    _, out = saved
    config = json.loads((out / "config.json").read_text())
    config["model_args"]["width"] = 5
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsIntegrityError):
        verify_weights_dir(out)


def test_pickle_weights_are_refused_and_never_executed(saved, tmp_path):
    _, out = saved
    sentinel = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(sentinel), "w"))

    (out / "model.bin").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(WeightsIntegrityError, match="pickle"):
        load_pretrained(out)
    assert not sentinel.exists()


def test_missing_checksums_refused(saved):
    _, out = saved
    (out / "SHA256SUMS").unlink()
    with pytest.raises(WeightsIntegrityError, match="SHA256SUMS"):
        load_pretrained(out)


def test_hub_ids_need_pinned_revision_and_never_download():
    with pytest.raises(ModelUnavailableError, match="40-character commit"):
        resolve_weights("someone/some-model", revision="main")
    with pytest.raises(ModelUnavailableError, match="not in the local cache"):
        resolve_weights("someone/some-model", revision="0" * 40)


def test_stage_for_hub_is_exactly_the_verified_folder(saved, tmp_path):
    model, out = saved
    staged = stage_for_hub(out, tmp_path / "stage")
    assert sorted(p.name for p in staged.iterdir()) == sorted([*read_checksums(out), "SHA256SUMS"])
    loaded = load_pretrained(staged)
    x = torch.randn(2, 4)
    assert torch.equal(model(x), loaded.model(x))


def test_a_verified_file_is_hashed_again_only_when_it_changes(tmp_path, monkeypatch):
    import hashlib
    import os

    import fdin.weights as weights

    monkeypatch.setenv("FDIN_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "model.dat"
    model.write_bytes(b"landmark model" * 1000)
    good = hashlib.sha256(model.read_bytes()).hexdigest()
    hashed: list[str] = []
    real = weights.sha256_file
    monkeypatch.setattr(weights, "sha256_file", lambda p: hashed.append(str(p)) or real(p))

    assert weights.has_sha256(model, good) and weights.has_sha256(model, good)
    assert len(hashed) == 1  # the second load trusts the record: same size, time, inode
    assert not weights.has_sha256(model, "0" * 64) and len(hashed) == 2  # another expectation: hashed
    stat = model.stat()
    model.write_bytes(b"tampered model" * 1000)  # same size ...
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # ... touched
    assert not weights.has_sha256(model, good) and len(hashed) == 3
    assert not weights.has_sha256(model, good) and len(hashed) == 4  # a mismatch is never recorded
