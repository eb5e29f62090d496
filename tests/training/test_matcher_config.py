"""MatcherConfig: the hyper-parameters of train_matcher, checked up front and kept in the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.artefacts import read_manifest
from tests.training.test_train_matcher import TINY, tiny_dataset
from training.train_matcher import MatcherConfig, train_matcher


def test_bad_values_are_refused_before_any_work() -> None:
    with pytest.raises(ValueError, match="augment"):
        MatcherConfig(augment="mixup")
    with pytest.raises(ValueError, match="epochs"):
        MatcherConfig(epochs=0)
    with pytest.raises(ValueError, match="noise"):
        MatcherConfig(noise="loud")
    with pytest.raises(TypeError):
        train_matcher(tiny_dataset(), "unused", no_such_option=1)


def test_the_manifest_holds_the_config_and_it_rebuilds_the_run(tmp_path: Path) -> None:
    config = MatcherConfig(arch="vanilla", epochs=1, batch_size=8, seed=4, tiny_config=TINY, max_length=32)
    # Options override the config's fields.
    train_matcher(tiny_dataset(), tmp_path, config, fields=["title", "brand"], progress=False)
    stored = read_manifest(tmp_path).settings["config"]
    assert stored == json.loads(json.dumps(stored))  # plain JSON
    assert stored["fields"] == ["title", "brand"] and stored["seed"] == 4 and stored["arch"] == "vanilla"
    assert MatcherConfig(**stored).to_dict() == stored
