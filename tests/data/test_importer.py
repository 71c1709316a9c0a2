"""Importing a user's folder or zip: valid data lands, hostile archives write nothing anywhere."""

import zipfile

import pytest

from flagvision.data.importer import DatasetImportError, import_dataset
from fv_helpers import make_pattern_dataset, zip_bytes


@pytest.fixture
def image_entries(tmp_path):
    data = make_pattern_dataset(tmp_path / "src", per_class=3)
    return {f"flags/{p.parent.name}/{p.name}": p.read_bytes() for p in sorted(data.rglob("*.png"))}


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_zip_import_strips_top_folder_and_skips_junk(workspace, image_entries):
    entries = dict(image_entries)
    entries["flags/vertical/notes.txt"] = b"hello"
    entries["flags/vertical/fake.jpg"] = b"not an image"
    entries["flags/inner.zip"] = zip_bytes({"a.png": b"x"})
    dest, report = import_dataset(workspace, zip_bytes(entries), name="mine")
    assert dest == workspace.datasets_dir / "mine"
    assert sorted(p.name for p in dest.iterdir()) == ["diagonal", "horizontal", "vertical"]
    assert report["images"] == 9
    skipped = dict(report["skipped"])
    assert "flags/vertical/fake.jpg" in skipped and "nested archive" in skipped["flags/inner.zip"]


def test_folder_import_copies_only_images(workspace, tmp_path):
    src = make_pattern_dataset(tmp_path / "photos", per_class=3)
    (src / "vertical" / "broken.jpg").write_bytes(b"")
    before = _tree(src)
    dest, report = import_dataset(workspace, src)
    assert report["images"] == 9 and [p for p, _ in report["skipped"]] == ["vertical/broken.jpg"]
    assert _tree(src) == before  # source untouched


@pytest.mark.parametrize(
    "entries,symlinks,fragment",
    [
        ({"../evil/a.png": b"x"}, None, "leaving its folder"),
        ({"/etc/evil.png": b"x"}, None, "absolute path"),
        ({"a/b.png": b"x"}, {"a/link.png": "/etc/passwd"}, "symbolic link"),
        ({"bomb/a.png": b"\0" * (30 * 2**20)}, None, "zip bomb"),
    ],
)
def test_hostile_zips_write_nothing(workspace, tmp_path, entries, symlinks, fragment):
    before = _tree(workspace.root)
    with pytest.raises(DatasetImportError, match=fragment):
        import_dataset(workspace, zip_bytes(entries, symlinks), name="hostile")
    assert _tree(workspace.root) == before
    assert not (tmp_path / "evil").exists()


def test_too_many_entries(workspace, monkeypatch):
    from flagvision.data import importer

    monkeypatch.setattr(importer, "MAX_ENTRIES", 50)
    with pytest.raises(DatasetImportError, match="more than the 50 allowed"):
        import_dataset(
            workspace, zip_bytes({f"c{i % 2}/{i}.png": b"x" for i in range(100)}, compression=zipfile.ZIP_STORED)
        )


def test_not_a_zip_and_existing_name(workspace, image_entries, tmp_path):
    fake = tmp_path / "photos.zip"
    fake.write_text("I am not a zip")
    with pytest.raises(DatasetImportError, match="neither a folder nor a zip"):
        import_dataset(workspace, fake)
    import_dataset(workspace, zip_bytes(image_entries), name="taken")
    with pytest.raises(DatasetImportError, match="already exists"):
        import_dataset(workspace, zip_bytes(image_entries), name="taken")


def test_zip_without_classes_refused(workspace):
    with pytest.raises(DatasetImportError, match="no class sub-folders|only one class"):
        import_dataset(workspace, zip_bytes({"only/a.png": b"x"}))
    assert workspace.list_datasets() == []
