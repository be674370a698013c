"""The dataset registry: one home for DatasetSpec, the reader table and dataset-derived defaults."""

from __future__ import annotations

import importlib

import pytest

from srkd.data import registry
from srkd.data.registry import DATASETS, LAYOUTS, READERS, dataset_default, get_dataset_spec
from srkd.errors import ConfigError


def test_every_registered_dataset_names_a_readable_layout():
    for name in DATASETS.names():
        spec = get_dataset_spec(name)
        assert spec.layout in LAYOUTS
        module, reader = READERS[spec.layout]
        assert callable(getattr(importlib.import_module(module), reader))
        assert len(spec.class_names) == spec.num_classes == len(spec.class_colors)


@pytest.mark.parametrize("name", registry.DATASET_DEFAULTS)
def test_a_given_value_wins_over_the_dataset(name):
    nuscenes = get_dataset_spec("nuscenes")
    assert dataset_default(name, 0.123, nuscenes) == 0.123
    assert dataset_default(name, None, nuscenes) == getattr(nuscenes, name)
    # no known dataset (e.g. a checkpoint of classes nobody registered): the default dataset's
    assert dataset_default(name, None, None) == getattr(get_dataset_spec("scannet"), name)


def test_dataset_defaults_are_the_recipes():
    assert [dataset_default("grid_size", None, get_dataset_spec(n)) for n in ("scannet", "nuscenes")] == [0.02, 0.05]
    assert [dataset_default("weight_decay", None, get_dataset_spec(n)) for n in ("scannet", "nuscenes")] == [0.05, 0.005]
    with pytest.raises(ConfigError, match="'views' is not a dataset-derived setting"):
        dataset_default("views", None, None)


def test_old_import_paths_still_work():
    from srkd.data.scannet import DATASETS as OLD_DATASETS
    from srkd.data.scannet import DatasetSpec, ScanNetScenes, get_dataset_spec as old_get

    assert OLD_DATASETS is DATASETS and DatasetSpec is registry.DatasetSpec and old_get is get_dataset_spec
    assert ScanNetScenes.__module__ == "srkd.data.scannet.reader"
    with pytest.raises(AttributeError):
        importlib.import_module("srkd.data.scannet").no_such_name  # noqa: B018


def test_help_notes_come_from_the_registry():
    assert registry.per_dataset("grid_size") == "the dataset's: 0.05 nuscenes / semantickitti, 0.02 scannet / scannet200"
