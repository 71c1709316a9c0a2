"""Import a user's folder or zip of photos into ``<workspace>/datasets/<name>/``.

The source is never modified. A zip is read entry by entry with limits that stop hostile archives
before anything is written: absolute or ``..`` paths, symlinks, too many entries, too many bytes,
a suspicious compression ratio (zip bomb). Only files that decode as images are copied (nested
archives and other files are reported as skipped), into a temporary folder that is renamed into
place once the result is a valid dataset, so a failed import leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from flagvision.data.folders import DatasetError, scan_dataset
from flagvision.data.images import ImageError, is_image_name, open_image
from flagvision.errors import FlagVisionError
from flagvision.workspace import Workspace

MAX_ENTRIES = 20_000
MAX_TOTAL_BYTES = 2 * 2**30  # uncompressed
MAX_FILE_BYTES = 50 * 2**20
MAX_RATIO = 200  # uncompressed / compressed for one entry; images barely compress
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


class DatasetImportError(FlagVisionError, ValueError):
    """An archive or folder that cannot be imported; nothing was written."""


def _dataset_name(name: str | None, source: Path) -> str:
    name = (name or source.stem).strip()
    name = re.sub(r"[^A-Za-z0-9 _.-]", "_", name)[:64].strip(" ._") or "dataset"
    if not NAME_RE.match(name):
        raise DatasetImportError(f"dataset name {name!r} must use letters, digits, space, _ . - (max 64)")
    return name


def _safe_member_path(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The entry's relative path, or None for a directory; raise on a hostile entry."""
    raw = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DatasetImportError(f"the zip holds a symbolic link ({info.filename}); refused")
    path = PurePosixPath(raw)
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw) or path.is_absolute():
        raise DatasetImportError(f"the zip holds an absolute path ({info.filename}); refused")
    if ".." in path.parts:
        raise DatasetImportError(f"the zip holds a path leaving its folder ({info.filename}); refused")
    if raw.endswith("/"):
        return None
    return path


def _declared_entries(source: Path) -> int | None:
    """The entry count the zip's end record declares, read without parsing the central directory
    (parsing 100,000 entries takes seconds); None if it cannot be read (ZipFile says why)."""
    try:
        with open(source, "rb") as f:
            end = zipfile._EndRecData(f)  # type: ignore[attr-defined]  # stable since Python 2; handles zip64
    except (OSError, zipfile.BadZipFile, struct.error):
        return None
    return None if end is None else int(end[zipfile._ECD_ENTRIES_TOTAL])  # type: ignore[attr-defined]  # private too


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The entry's bytes, read with a hard cap (the header's size may lie); a damaged, encrypted or
    oddly compressed entry refuses the whole archive with a message instead of a traceback."""
    try:
        with archive.open(info) as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except NotImplementedError as exc:
        raise DatasetImportError(
            f"{info.filename} uses a compression method that cannot be read ({exc}); "
            "re-create the zip with ordinary (deflate) compression"
        ) from None
    except RuntimeError:  # zipfile says "encrypted, password required" (after its subclass above)
        raise DatasetImportError(f"{info.filename} is encrypted; password-protected zips are not supported") from None
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error, ValueError) as exc:
        raise DatasetImportError(f"the zip is damaged at {info.filename} ({exc}); nothing was imported") from None
    if len(data) > MAX_FILE_BYTES:
        raise DatasetImportError(f"{info.filename} expands past the {MAX_FILE_BYTES // 2**20} MB limit per file")
    return data


def _extract_zip(source: Path, dest: Path) -> list[tuple[str, str]]:
    skipped: list[tuple[str, str]] = []
    declared = _declared_entries(source)
    if declared is not None and declared > MAX_ENTRIES:
        raise DatasetImportError(f"the zip holds {declared} entries, more than the {MAX_ENTRIES} allowed")
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetImportError(f"{source.name} is not a readable zip file ({exc})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise DatasetImportError(f"the zip holds {len(infos)} entries, more than the {MAX_ENTRIES} allowed")
        total = 0
        for info in infos:
            _safe_member_path(info)
            total += info.file_size
            if info.file_size > MAX_FILE_BYTES:
                raise DatasetImportError(
                    f"{info.filename} is {info.file_size / 2**20:.0f} MB, "
                    f"over the {MAX_FILE_BYTES // 2**20} MB limit per file"
                )
            if info.compress_size and info.file_size / info.compress_size > MAX_RATIO and info.file_size > 2**20:
                raise DatasetImportError(
                    f"{info.filename} expands {info.file_size // max(info.compress_size, 1)}× (a zip bomb?); refused"
                )
        if total > MAX_TOTAL_BYTES:
            raise DatasetImportError(
                f"the zip expands to {total / 2**30:.1f} GB, over the {MAX_TOTAL_BYTES // 2**30} GB limit"
            )
        for info in infos:
            rel = _safe_member_path(info)
            if rel is None or rel.name.startswith(".") or "__MACOSX" in rel.parts:
                continue
            if not is_image_name(rel.name):
                skipped.append(
                    (info.filename, "not an image file" + (" (nested archive)" if rel.suffix.lower() == ".zip" else ""))
                )
                continue
            data = _read_member(archive, info)
            try:
                open_image(data)
            except ImageError as exc:
                skipped.append((info.filename, str(exc).replace("uploaded image", rel.name)))
                continue
            target = dest.joinpath(*rel.parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            except OSError as exc:  # a name too long for the disk, a file and a folder of one name
                skipped.append((info.filename, f"cannot be stored ({exc.strerror or exc})"))
                continue
    return skipped


def _copy_folder(source: Path, dest: Path) -> list[tuple[str, str]]:
    skipped: list[tuple[str, str]] = []
    count = 0
    for root, dirs, files in os.walk(source, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for fname in files:
            src = Path(root) / fname
            rel = src.relative_to(source)
            if src.is_symlink():
                skipped.append((str(rel), "symbolic link; not followed"))
                continue
            if not is_image_name(fname):
                continue
            if not src.is_file():  # a FIFO or device named like a photo: never read it
                skipped.append((str(rel), "not a regular file"))
                continue
            count += 1
            if count > MAX_ENTRIES:
                raise DatasetImportError(f"the folder holds more than {MAX_ENTRIES} images")
            try:
                open_image(src)
            except ImageError as exc:
                skipped.append((str(rel), str(exc)))
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
    return skipped


def _strip_single_top_folder(folder: Path) -> Path:
    """A zip of ``flags/<class>/…`` imports as ``<class>/…``."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        try:
            scan_dataset(inner)
            return inner
        except DatasetError:
            pass
    return folder


def import_dataset(ws: Workspace, source: Path | bytes, name: str | None = None) -> tuple[Path, dict]:
    """Import ``source`` (folder, zip path, or zip bytes) as a new dataset; return (folder, report)."""
    if isinstance(source, (bytes, bytearray)):
        with tempfile.NamedTemporaryFile(suffix=".zip", dir=ws.root, delete=False) as tmp:
            tmp.write(source)
        try:
            return import_dataset(ws, Path(tmp.name), name=name or "upload")
        except DatasetImportError as exc:  # name the upload, not our temporary copy of it
            raise DatasetImportError(str(exc).replace(Path(tmp.name).name, "the uploaded file")) from None
        finally:
            os.unlink(tmp.name)
    source = Path(source)
    if not source.exists():
        raise DatasetImportError(f"{source} does not exist")
    dataset_name = _dataset_name(name, source)
    final = ws.dataset_dir(dataset_name)
    if final.exists():
        raise DatasetImportError(f"a dataset named {dataset_name!r} already exists; choose another name")
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=ws.datasets_dir))
    try:
        if source.is_dir():
            skipped = _copy_folder(source, staging)
        elif zipfile.is_zipfile(source):
            skipped = _extract_zip(source, staging)
        else:
            raise DatasetImportError(f"{source.name} is neither a folder nor a zip file")
        root = _strip_single_top_folder(staging)
        try:
            index = scan_dataset(root)
        except DatasetError as exc:
            raise DatasetImportError(f"{source.name}: {exc}".replace(str(root), "the import")) from None
        os.replace(root, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report = {
        "name": dataset_name,
        "classes": index.class_names,
        "images": len(index.train) + len(index.eval),
        "skipped": skipped,
    }
    return final, report


__all__ = ["DatasetImportError", "import_dataset"]
