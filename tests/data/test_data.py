import shutil

import pytest
import torch

from flagvision.config import DataConfig
from flagvision.data.dataset import CACHE_DIR, LazyImages, augment_batch, load_dataset, load_eval_images
from flagvision.data.folders import DatasetError, summarize
from fv_helpers import make_pattern_dataset


def test_stratified_split_is_seeded_and_complete(tiny_dataset):
    a = load_dataset(DataConfig(path=str(tiny_dataset), image_size=32, split_seed=1), use_disk_cache=False)
    b = load_dataset(DataConfig(path=str(tiny_dataset), image_size=32, split_seed=1), use_disk_cache=False)
    c = load_dataset(DataConfig(path=str(tiny_dataset), image_size=32, split_seed=2), use_disk_cache=False)
    assert a.val.paths == b.val.paths and a.val.paths != c.val.paths
    assert sorted(a.train.paths + a.val.paths) == sorted(str(p) for p in tiny_dataset.rglob("*.png"))
    assert a.val.class_counts(3) == [2, 2, 2]  # 20% of 12 per class, stratified
    assert a.train.images.dtype == torch.uint8 and a.train.images.shape[1:] == (3, 32, 32)
    assert a.eval_split_name is None


def test_train_test_folders_are_used(tmp_path):
    make_pattern_dataset(tmp_path / "d" / "train", per_class=6)
    make_pattern_dataset(tmp_path / "d" / "test", per_class=3, seed=5)
    bundle = load_dataset(DataConfig(path=str(tmp_path / "d"), image_size=32))
    assert len(bundle.train) == 18 and len(bundle.val) == 9 and bundle.eval_split_name == "test"


def test_disk_cache_reused_and_invalidated_by_content(tmp_path):
    data = make_pattern_dataset(tmp_path / "d", per_class=5)
    first = load_dataset(DataConfig(path=str(data), image_size=32))
    caches = list((data / CACHE_DIR).glob("*.pt"))
    assert len(caches) == 1
    again = load_dataset(DataConfig(path=str(data), image_size=32))
    assert again.fingerprint == first.fingerprint and torch.equal(again.train.images, first.train.images)
    # Changing one file's content changes the fingerprint: the stale cache is not used.
    shutil.copyfile(data / "vertical" / "000.png", data / "vertical" / "001.png")
    changed = load_dataset(DataConfig(path=str(data), image_size=32))
    assert changed.fingerprint != first.fingerprint


def test_streaming_above_cache_limit(tmp_path):
    data = make_pattern_dataset(tmp_path / "d", per_class=5)
    bundle = load_dataset(DataConfig(path=str(data), image_size=32, cache_limit_mb=0))
    assert not bundle.cached_in_memory and isinstance(bundle.train.images, LazyImages)
    batch = bundle.train.images[torch.tensor([0, 2])]
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == torch.uint8
    inmem = load_dataset(DataConfig(path=str(data), image_size=32))
    assert sorted(bundle.train.paths) == sorted(inmem.train.paths)


def test_all_unreadable_refused(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        (tmp_path / c / "x.jpg").write_text("nope")
    with pytest.raises(DatasetError, match="none of the 2 image files could be read"):
        load_dataset(DataConfig(path=str(tmp_path)))


def test_augment_batch_per_sample_and_seeded(tiny_dataset):
    bundle = load_dataset(DataConfig(path=str(tiny_dataset), image_size=32), use_disk_cache=False)
    x = bundle.train.images[:1].repeat(4, 1, 1, 1)
    out1 = augment_batch(x, 0.8, torch.Generator().manual_seed(0))
    out2 = augment_batch(x, 0.8, torch.Generator().manual_seed(0))
    assert torch.equal(out1, out2) and out1.shape == (4, 3, 32, 32)
    assert not torch.allclose(out1[0], out1[1])  # each sample gets its own parameters
    assert 0 <= out1.min() and out1.max() <= 1
    assert torch.allclose(augment_batch(x, 0.0, torch.Generator()), x.float() / 255)


def test_augment_batch_mirrors_about_half_the_images():
    # At a vanishing strength the affine is the identity, so each output is its input or its mirror.
    x = torch.randint(0, 256, (200, 3, 12, 12), dtype=torch.uint8)
    out = augment_batch(x, 1e-9, torch.Generator().manual_seed(0))
    plain, mirrored = x.float() / 255, x.flip(-1).float() / 255
    same = (out - plain).abs().amax(dim=(1, 2, 3)) < 1e-4
    flipped = (out - mirrored).abs().amax(dim=(1, 2, 3)) < 1e-4
    assert bool((same | flipped).all())
    assert 60 <= int(flipped.sum()) <= 140


def test_eval_images_map_classes_by_name(tmp_path, tiny_dataset):
    split = load_eval_images(tiny_dataset, ["vertical", "horizontal", "diagonal", "extra"], 32)
    assert len(split) == 36 and set(split.labels.tolist()) == {0, 1, 2}
    with pytest.raises(DatasetError, match="unknown to the model"):
        load_eval_images(tiny_dataset, ["vertical", "horizontal"], 32)


def test_summary_reports_unreadable(tmp_path):
    data = make_pattern_dataset(tmp_path / "d", per_class=3)
    (data / "vertical" / "bad.jpg").write_bytes(b"")
    s = summarize(data)
    assert s["splits"]["train"] == {"diagonal": 3, "horizontal": 3, "vertical": 3}
    assert [p for p, _ in s["unreadable"]] == [str(data / "vertical" / "bad.jpg")]
    assert s["sizes"] == {"40x40": 9}
