"""The index directory: manifest.json + the segment folders it lists; atomic save, validated load.

Layout:
    index/.ragqa-index       marks the folder as ragqa's; written before anything else in it
    index/manifest.json      the commit point: replaced atomically, lists the segment folders in row order
    index/data-<generation>/ a segment: chunk texts, hashes, tokens, BM25 postings (raw counts), vectors and
                             its FAISS index, and the ownership marker .ragqa-generation holding <generation>.
                             The first segment (the base) is what a full build writes; an incremental build
                             that changes little adds one segment with the chunks of the files it read. The
                             newest segment also holds the commit's corpus-wide files: df.npy (document
                             frequencies over live rows) and tombstones.npy (rows deleted since). The source
                             files' records are files.json in a base, files-changed.json (the records the
                             build changed, the files it removed) in a later segment.
    index/.lock              held by `ragqa index` while it builds
Segments never change once written. A build writes `.tmp-<generation>/`, renames it `data-<generation>/`, then
swaps the manifest; a reader opens whatever the manifest names, so it sees the old index or the new one, never
a mix. ragqa deletes or replaces only what it can prove it wrote: generation folders whose name and marker
agree (or, for indexes written before markers, one its manifest names), and its own manifest. Anything else in
the folder is left alone, and a folder holding someone else's files is refused.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import stat
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import IndexBusy, IndexCorrupt, IndexMissing, IndexWriteFailed, NotAnIndex, RagqaError, UsageError
from .manifest import FORMAT, FORMAT_VERSION, Manifest, Segment
from .schema import Chunk, Hit

MANIFEST = "manifest.json"
FILES, FILES_CHANGED = "files.json", "files-changed.json"  # a base's table of source files; a segment's changes
LOCK = ".lock"
INDEX_MARKER = ".ragqa-index"
GEN_MARKER = ".ragqa-generation"
GENERATION = re.compile(r"(?:\.tmp|data)-(\d{8}T\d{6}-[0-9a-f]{6})")
REBUILD = "rebuild it with `ragqa index`"
CHOOSE = "choose another --index-dir"


# ---------------------------------------------------------------- compact tables


def write_strings(path: Path, strings: list[str]) -> None:
    """UTF-8 strings concatenated in `<path>.bin` with int64 offsets in `<path>.off.npy`."""
    encoded = [s.encode("utf-8") for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    with open(f"{path}.bin", "wb") as f:
        f.write(b"".join(encoded))
    np.save(f"{path}.off.npy", offsets, allow_pickle=False)


class StringTable:
    """Read side of write_strings: memory-mapped, decodes one string at a time."""

    def __init__(self, path: Path):
        self.offsets = np.load(f"{path}.off.npy", mmap_mode="r", allow_pickle=False)
        size = os.path.getsize(f"{path}.bin")
        if size != int(self.offsets[-1]):
            raise IndexCorrupt(f"{path.name}.bin is {size} bytes, expected {int(self.offsets[-1])}")
        self.blob = np.memmap(f"{path}.bin", dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.blob[a:b].tobytes().decode("utf-8")

    def all(self) -> list[str]:
        """Every string at once (one read of the blob: much faster than item by item)."""
        blob = self.blob.tobytes()
        off = self.offsets.tolist()
        return [blob[a:b].decode("utf-8") for a, b in zip(off, off[1:])]


def ragged(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Variable-length rows as (flat int32 values, int64 offsets of each row's start, plus the end)."""
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    flat = np.concatenate(arrays).astype(np.int32, copy=False) if arrays else np.zeros(0, np.int32)
    return flat, offsets


def write_ragged(path: Path, flat: np.ndarray, offsets: np.ndarray) -> None:
    """What `ragged` gives: flat values in `<path>.npy`, offsets in `<path>.off.npy`."""
    np.save(f"{path}.npy", flat, allow_pickle=False)
    np.save(f"{path}.off.npy", offsets, allow_pickle=False)


def read_ragged(path: Path) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.load(f"{path}.npy", mmap_mode="r", allow_pickle=False),
        np.load(f"{path}.off.npy", mmap_mode="r", allow_pickle=False),
    )


# ---------------------------------------------------------------- what a build hands over


@dataclass
class IndexContents:
    """The rows of one new segment (every row, for a full build) and the commit's corpus-wide tables."""

    chunks: list[Chunk]
    articles: list[dict]  # {"doc_id", "source", "title", "display_title"} of these chunks, first-appearance order
    tokens: tuple[np.ndarray, np.ndarray]  # `ragged` token ids into `vocab`, a row per chunk
    vocab: dict[str, int]  # every segment's words: append-only, so cached token ids stay valid
    files_info: dict  # per source file: sha256, ID base, article IDs, dropped lines, size and mtime
    vectors: np.ndarray | None
    sections: dict = field(default_factory=dict)  # the manifest's signature, corpus, chunker, lexical, dense...
    postings: object = None  # lexical.Postings over `tokens`
    vector_store: object = None  # a vectors.VectorStore holding `vectors` under `vector_ids`
    vector_ids: np.ndarray | None = None  # the store's id of each row
    df: np.ndarray | None = None  # live chunks holding each token id, over every segment
    tombstones: np.ndarray | None = None  # global rows of earlier segments that are deleted
    segments: list[dict] = field(default_factory=list)  # the manifest records of the segments kept before this one
    vocab_start: int = 0  # the first token id this segment adds
    live_length: int = 0  # tokens in the live chunks of every segment
    files_changed: dict | None = None  # {"changed": records this build wrote, "removed": keys}: what a segment
    # beside the others stores instead of files_info (None: a base or a fold, which store the whole table)


# ---------------------------------------------------------------- ownership and locking


def _is_file(path: Path) -> bool:
    """A regular file, not a symbolic link to one."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _own_manifest(index_dir: Path) -> dict | None:
    """The manifest ragqa wrote in index_dir (any format version), None if there is none; {} if it is damaged
    in a folder ragqa marked as its own (a build may replace it)."""
    path = index_dir / MANIFEST
    try:
        # ragqa never writes a symlink or a folder here: such a manifest.json is someone else's
        manifest = None if path.is_symlink() or path.is_dir() else json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as e:  # not JSON, or not text
        if _is_file(index_dir / INDEX_MARKER):
            return {}
        raise NotAnIndex(f"{path} is not a ragqa index (not valid JSON: {e}); {CHOOSE}") from None
    except OSError as e:
        raise IndexCorrupt(f"cannot read {path}: {e.strerror}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise NotAnIndex(f"{path} is not a ragqa index, so ragqa will not replace it; {CHOOSE}")
    return manifest


def recorded_roots(index_dir: Path) -> list[str]:
    """The sources a ragqa manifest of any format names, even one this version cannot load: an index of an
    older format is rebuilt from the same articles, not from the seeds."""
    try:
        roots = (_own_manifest(index_dir) or {}).get("corpus", {}).get("roots", [])
    except (RagqaError, AttributeError):
        return []
    return [r for r in roots if isinstance(r, str)] if isinstance(roots, list) else []


def check_index_dir(index_dir: Path, roots=()) -> None:
    """Refuse an index folder ragqa must not write into: a file, the articles' folder, someone else's folder."""
    if index_dir.exists() and not index_dir.is_dir():
        raise NotAnIndex(f"{index_dir} is a file, not an index folder; {CHOOSE}")
    where = index_dir.resolve()
    for root in map(Path, roots):
        if where == root.resolve() or where in root.resolve().parents:
            raise UsageError(
                f"the index folder {index_dir.absolute()} is or contains the articles {root.absolute()}; "
                "choose an --index-dir outside them"
            )
    if not index_dir.is_dir():
        return
    # a foreign manifest.json is refused even in a marked folder
    if _own_manifest(index_dir) is not None or _is_file(index_dir / INDEX_MARKER):
        return
    # hidden files (.gitkeep, ...) are fine, but not a lock ragqa would write into
    others = sorted(p.name for p in index_dir.iterdir() if not p.name.startswith(".") or p.name == LOCK)
    # a concurrent first build may have claimed the folder meanwhile: its marker precedes all its other files
    if others and not _is_file(index_dir / INDEX_MARKER):
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise NotAnIndex(
            f"{index_dir} is not a ragqa index and already holds files ({shown}); {CHOOSE} (a new or empty folder)"
        )


def _claim(index_dir: Path) -> None:
    """Create index_dir, or check that it is ragqa's or empty, and mark it as a ragqa index."""
    check_index_dir(index_dir)
    marker = index_dir / INDEX_MARKER
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:  # a broken symlink, or a file on the way
        raise NotAnIndex(f"cannot create the index folder {index_dir}: {e.strerror}; {CHOOSE}") from None
    except OSError as e:
        _raise_write_error(e, index_dir)
        raise
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("a ragqa index: ragqa manages manifest.json, .lock and the data-* folders marked as its own\n")
    except FileExistsError:
        if _is_file(marker):
            return
        raise NotAnIndex(f"{marker} is not ragqa's marker file; {CHOOSE}") from None
    except OSError as e:
        _raise_write_error(e, index_dir)
        raise


def _open_lock(path: Path) -> int:
    """A descriptor on the lock file; refuses a symlink, a non-regular file, or a file with other hard links."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EISDIR):
            raise NotAnIndex(
                f"{path} is not ragqa's lock file (a symbolic link or a folder): remove it and try again"
            ) from None
        _raise_write_error(e, path)
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise NotAnIndex(f"{path} is not ragqa's lock file (not a regular file with one link): remove it and try again")
    return fd


@contextmanager
def index_lock(index_dir: Path, wait: float | None = None, on_wait=None):
    """Exclusive build lock; waits up to `wait` seconds (None: forever) for another build to finish."""
    _claim(index_dir)
    fd = _open_lock(index_dir / LOCK)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            if wait == 0:
                raise IndexBusy(
                    f"{index_dir} is being built by another ragqa process (pid {holder}); try again when it finishes"
                ) from None
            if on_wait:
                on_wait(holder)
            deadline = None if wait is None else time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if deadline is not None and time.monotonic() > deadline:
                        raise IndexBusy(
                            f"gave up after {wait:g} s waiting for another ragqa build of {index_dir} (pid {holder})"
                        ) from None
                    time.sleep(0.2)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass  # the pid only names the holder in other builds' messages; a full disk is reported by save
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


# ---------------------------------------------------------------- save


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb+") as f:
                os.fsync(f.fileno())
    for d in [path, *[p for p in path.rglob("*") if p.is_dir()]]:
        _fsync_dir(d)


def write_data(tmp: Path, contents: IndexContents) -> dict:
    """Write a segment's files and the commit's into `tmp`; returns the segment's 'files' (name -> bytes)."""
    write_strings(tmp / "chunk_id", [c.chunk_id for c in contents.chunks])
    write_strings(tmp / "chunk_text", [c.text for c in contents.chunks])
    write_strings(tmp / "chunk_hash", [c.hash for c in contents.chunks])
    doc_index = {a["doc_id"]: i for i, a in enumerate(contents.articles)}
    np.save(tmp / "chunk_doc.npy", np.array([doc_index[c.doc_id] for c in contents.chunks], np.int32))
    (tmp / "articles.json").write_text(json.dumps(contents.articles, ensure_ascii=False), encoding="utf-8")
    write_ragged(tmp / "tokens", *contents.tokens)
    words = sorted((w for w, i in contents.vocab.items() if i >= contents.vocab_start), key=contents.vocab.get)
    (tmp / "vocab.json").write_text(json.dumps(words, ensure_ascii=False), encoding="utf-8")
    contents.postings.save(tmp)
    if contents.vectors is not None:
        np.save(tmp / "vectors.npy", contents.vectors, allow_pickle=False)
        np.save(tmp / "vector_ids.npy", contents.vector_ids, allow_pickle=False)
        contents.vector_store.save(tmp)
    if contents.files_changed is not None:
        (tmp / FILES_CHANGED).write_text(json.dumps(contents.files_changed, ensure_ascii=False), encoding="utf-8")
    else:
        (tmp / FILES).write_text(json.dumps(contents.files_info, ensure_ascii=False), encoding="utf-8")
    np.save(tmp / "df.npy", np.asarray(contents.df, dtype=np.int64), allow_pickle=False)
    tombstones = contents.tombstones if contents.tombstones is not None else np.zeros(0)
    np.save(tmp / "tombstones.npy", np.asarray(tombstones, dtype=np.int64), allow_pickle=False)
    return {
        p.relative_to(tmp).as_posix(): p.stat().st_size
        for p in sorted(tmp.rglob("*"))
        if p.is_file() and p.name != GEN_MARKER
    }


_WRITE_ERRORS = {
    errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
}


def _raise_write_error(e: OSError, path: Path, note: str = "") -> None:
    """Turn a write failure the user can fix into IndexWriteFailed; other errors are left to the caller."""
    if e.errno in _WRITE_ERRORS:
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        fix = "free space and run `ragqa index` again" if full else "choose a writable --index-dir"
        raise IndexWriteFailed(f"{_WRITE_ERRORS[e.errno]} while writing {e.filename or path}: {fix}{note}") from None


def save(index_dir: Path, contents: IndexContents) -> dict:
    """Write a new segment and switch the manifest to the segments it completes, atomically. Call under
    index_lock."""
    previous = _own_manifest(index_dir)
    generation = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    tmp = index_dir / f".tmp-{generation}"
    data_dir = index_dir / f"data-{generation}"
    committed = False
    try:
        tmp.mkdir()
        (tmp / GEN_MARKER).write_text(generation, encoding="ascii")
        files = write_data(tmp, contents)
        _fsync_tree(tmp)
        os.rename(tmp, data_dir)
        manifest = _manifest(generation, data_dir.name, files, contents)
        # staged inside the new folder (same filesystem, so os.replace is atomic): no debris in index_dir
        staged = data_dir / ".manifest.tmp"
        with open(staged, "w", encoding="utf-8") as f:
            json.dump(manifest, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(staged, index_dir / MANIFEST)
        committed = True
        _fsync_dir(index_dir)
    except BaseException as e:
        if committed:
            raise
        for folder in (tmp, data_dir):  # never committed: nothing may be left to block the next build
            if folder.exists():
                _remove_generation(folder, ignore_errors=True)
        if isinstance(e, OSError):
            _raise_write_error(e, index_dir, "; the previous index is intact" if previous else "")
        raise
    _remove_generations(index_dir, previous, keep=_named(manifest))
    return manifest


def _manifest(generation: str, data_dir: str, files: dict, contents: IndexContents) -> dict:
    from . import __version__

    dense = contents.sections.get("dense")
    faiss = dense is not None and dense.store.kind == "faiss"
    newest = Segment(dir=data_dir, rows=len(contents.chunks), files=files,
                     store=contents.vector_store.params() if faiss else None)
    return Manifest(
        format=FORMAT, format_version=FORMAT_VERSION, ragqa_version=__version__, generation=generation,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), data_dir=data_dir,
        segments=[*contents.segments, newest.model_dump(mode="json")], **contents.sections,
    ).model_dump(mode="json")


def _generation_marker(folder: Path) -> str | None:
    marker = folder / GEN_MARKER
    try:
        return marker.read_text(encoding="ascii") if _is_file(marker) else None
    except (OSError, ValueError):
        return None


def _named(manifest: dict | None) -> set[str]:
    """The folders a ragqa manifest of any format names: its segments, or the one data folder of older formats."""
    if not manifest:
        return set()
    names = {manifest.get("data_dir")}
    segments = manifest.get("segments")
    if isinstance(segments, list):
        names.update(s.get("dir") for s in segments if isinstance(s, dict))
    return {n for n in names if isinstance(n, str)}


def generations(index_dir: Path, manifest: dict | None) -> list[Path]:
    """Generation folders ragqa can prove it wrote: name and marker agree, or (indexes written before
    markers existed) `manifest`, a ragqa manifest, names it."""
    named = _named(manifest)
    found = []
    for p in sorted(index_dir.iterdir()):
        m = GENERATION.fullmatch(p.name)
        if m and not p.is_symlink() and p.is_dir():
            if _generation_marker(p) == m[1] or (p.name in named and p.name.startswith("data-")):
                found.append(p)
    return found


def _remove_generation(folder: Path, ignore_errors: bool = False) -> None:
    """Delete a generation folder, its marker last: an interrupted removal is finished by the next build."""
    try:
        for p in folder.iterdir():
            if p.name != GEN_MARKER:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        (folder / GEN_MARKER).unlink(missing_ok=True)
        folder.rmdir()
    except OSError:
        if not ignore_errors:
            raise


def _remove_generations(index_dir: Path, manifest: dict | None, keep: set[str]) -> list[str]:
    removed = []
    for p in generations(index_dir, manifest):
        if p.name not in keep:
            _remove_generation(p, ignore_errors=True)
            removed.append(p.name)
    return removed


def cleanup(index_dir: Path) -> list[str]:
    """Remove the generation folders ragqa wrote that the manifest does not name: segments a merge replaced
    and what failed or killed builds left. Call under index_lock."""
    manifest = _own_manifest(index_dir)
    return _remove_generations(index_dir, manifest, keep=_named(manifest))


# ---------------------------------------------------------------- load


def read_manifest(index_dir: Path) -> Manifest:
    """The validated manifest of the index in index_dir. Reads only: creates nothing."""
    from .manifest import validate

    path = index_dir / MANIFEST
    if index_dir.exists() and not index_dir.is_dir():
        raise NotAnIndex(f"{index_dir} is a file, not an index folder; {CHOOSE}")
    manifest = _own_manifest(index_dir) if index_dir.is_dir() else None
    if manifest is None:
        if index_dir.is_dir() and any(p.name.startswith("data-") for p in generations(index_dir, None)):
            raise IndexCorrupt(f"{path} is missing; {REBUILD}")
        raise IndexMissing(
            f"no index in {index_dir.absolute()}; build one with `ragqa index PATH/TO/ARTICLES`, or point "
            "--index-dir at an existing index"
        )
    if not manifest:
        raise IndexCorrupt(f"{path} is not valid JSON; {REBUILD}")
    return validate(manifest, str(path))


class Strings:
    """Several segments' StringTables read as one (global row = segment start + local row)."""

    def __init__(self, tables: list[StringTable], starts: np.ndarray):
        self.tables, self.starts = tables, starts

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i: int) -> str:
        s = int(np.searchsorted(self.starts, i, "right")) - 1
        return self.tables[s][i - int(self.starts[s])]

    def all(self) -> list[str]:
        return [x for t in self.tables for x in t.all()]


class SegmentData:
    """One segment folder of a loaded index: its chunk table, postings and vectors, memory-mapped."""

    def __init__(self, index_dir: Path, record: Segment, start: int, dense):
        self.dir, self.record, self.start, self.n = index_dir / record.dir, record, start, record.rows
        if not self.dir.is_dir():
            raise FileNotFoundError(self.dir)
        for name, size in record.files.items():
            actual = (self.dir / name).stat().st_size
            if actual != size:
                raise IndexCorrupt(f"{name} is {actual} bytes, the manifest says {size} (truncated?); {REBUILD}")
        self.ids = StringTable(self.dir / "chunk_id")
        self.texts = StringTable(self.dir / "chunk_text")
        self.hashes = StringTable(self.dir / "chunk_hash")
        self.chunk_doc = np.load(self.dir / "chunk_doc.npy", mmap_mode="r", allow_pickle=False)
        self.articles: list[dict] = json.loads((self.dir / "articles.json").read_text(encoding="utf-8"))
        if not (len(self.ids) == len(self.texts) == len(self.hashes) == len(self.chunk_doc) == self.n):
            raise IndexCorrupt(
                f"the chunk table of {record.dir} has {len(self.texts)} rows but the manifest counts {self.n}; {REBUILD}"
            )
        from .lexical import Postings

        try:
            self.postings = Postings.load(self.dir, self.n)
        except FileNotFoundError:
            raise  # a newer build removed this segment while we opened it: load() retries
        except (ValueError, OSError) as e:
            raise IndexCorrupt(f"BM25 index unreadable ({e}); {REBUILD}") from None
        # read now: a later build may delete this folder (open memory maps and descriptors stay readable)
        self.words: list[str] = json.loads((self.dir / "vocab.json").read_text(encoding="utf-8"))
        self.store_fd = None
        self.vectors = self.vector_ids = None
        self.store_params = record.store if record.store is not None else dense.store.params if dense else None
        if dense is not None:
            self.vectors = np.load(self.dir / "vectors.npy", mmap_mode="r", allow_pickle=False)
            if self.vectors.shape != (self.n, dense.dim):
                raise IndexCorrupt(
                    f"vectors.npy has shape {self.vectors.shape}, expected ({self.n}, {dense.dim}); {REBUILD}"
                )
            self.vector_ids = np.load(self.dir / "vector_ids.npy", allow_pickle=False)
            if self.vector_ids.shape != (self.n,):
                raise IndexCorrupt(f"vector_ids.npy has shape {self.vector_ids.shape}, expected ({self.n},); {REBUILD}")
            if dense.store.kind == "faiss" and not self.exact_scan(dense):
                # An IVF store loads lazily (only dense searches need it; a flat one is searched in vectors.npy);
                # an open descriptor keeps its file readable even if a newer build removes this segment first.
                from .vectors import FAISS_FILE

                self.store_fd = os.open(self.dir / FAISS_FILE, os.O_RDONLY)

    def close(self) -> None:
        if self.store_fd is not None:
            os.close(self.store_fd)
            self.store_fd = None

    def exact_scan(self, dense) -> bool:
        """Whether its store is a flat FAISS index: vectors.npy holds the same vectors, searched with numpy."""
        return dense.store.kind == "faiss" and self.store_params.get("kind", "flat") == "flat"

    def vector_store(self, dense):
        from .vectors import FAISS_FILE, ExactScan, store_class

        if self.exact_scan(dense):
            return ExactScan(self.vectors, self.vector_ids)
        fd_path = f"/proc/self/fd/{self.store_fd}"
        path = fd_path if os.path.exists(fd_path) else str(self.dir / FAISS_FILE)
        return store_class(dense.store.kind).load(path, self.store_params, self.n, dense.dim)

    @cached_property
    def _id_order(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows in id order, the ids in that order): kept, a search maps ids to rows by bisection."""
        order = np.argsort(self.vector_ids, kind="stable")
        return order, self.vector_ids[order]

    def rows_of_ids(self, ids: np.ndarray) -> np.ndarray:
        """Local rows holding the given vector ids (-1 for a missing result stays -1)."""
        ids = np.asarray(ids, dtype=np.int64)
        if not self.n:
            return np.full(len(ids), -1, dtype=np.int64)
        order, sorted_ids = self._id_order
        rows = order[np.clip(np.searchsorted(sorted_ids, ids), 0, self.n - 1)]
        return np.where((ids >= 0) & (self.vector_ids[rows] == ids), rows, -1)

    @cached_property
    def tokens(self) -> tuple[np.ndarray, np.ndarray]:
        return read_ragged(self.dir / "tokens")


class Index:
    """A loaded, validated index: its segments seen as one table of rows (global row = segment start + local
    row), deleted rows (tombstones) left out of every search. Large arrays stay memory-mapped."""

    def __init__(self, index_dir: Path, manifest: Manifest):
        self.dir = index_dir
        self.manifest = manifest
        self.segments: list[SegmentData] = []
        try:
            for record in manifest.segments:
                start = sum(s.n for s in self.segments)
                self.segments.append(SegmentData(index_dir, record, start, manifest.dense))
        except BaseException:
            self.close()
            raise
        self.starts = np.array([s.start for s in self.segments] + [sum(s.n for s in self.segments)], dtype=np.int64)
        self.n = int(self.starts[-1])  # rows, deleted ones included
        self.data = self.segments[0].dir  # the base segment
        commit = self.segments[-1].dir
        self.dead = np.load(commit / "tombstones.npy", allow_pickle=False).astype(np.int64)
        if len(self.dead) and (self.dead.min() < 0 or self.dead.max() >= self.n or np.any(np.diff(self.dead) <= 0)):
            raise IndexCorrupt(f"tombstones.npy names rows outside the {self.n} of the index; {REBUILD}")
        live = self.n - len(self.dead)
        if live != manifest.corpus.chunks:
            raise IndexCorrupt(
                f"the chunk table has {live} rows but the manifest counts {manifest.corpus.chunks} chunks; {REBUILD}"
            )
        words = [w for s in self.segments for w in s.words]
        self.vocab: dict[str, int] = {w: i for i, w in enumerate(words)}
        df = np.load(commit / "df.npy", allow_pickle=False)
        seen = 0
        for s in self.segments:
            seen += len(s.words)
            if len(s.postings.indptr) - 1 != seen:
                raise IndexCorrupt(f"the BM25 postings of {s.record.dir} do not match the vocabulary; {REBUILD}")
        if not (len(words) == len(df) == manifest.lexical.vocab_size):
            raise IndexCorrupt(f"vocab.json has {len(words)} tokens, df.npy {len(df)}; {REBUILD}")
        from .lexical import BM25

        self._bm25 = BM25(
            [s.postings for s in self.segments], df, live, manifest.lexical.live_length, self.vocab, self.dead
        )
        one = len(self.segments) == 1
        self.ids = self.segments[0].ids if one else Strings([s.ids for s in self.segments], self.starts)
        self.texts = self.segments[0].texts if one else Strings([s.texts for s in self.segments], self.starts)
        self.hashes = self.segments[0].hashes if one else Strings([s.hashes for s in self.segments], self.starts)
        self.articles: list[dict] = [a for s in self.segments for a in s.articles]

    def close(self) -> None:
        for s in getattr(self, "segments", []):
            s.close()

    def __del__(self):
        self.close()

    @property
    def dense(self):
        """The manifest's dense section (manifest.Dense), or None for a lexical-only index."""
        return self.manifest.dense

    @property
    def bm25(self):
        return self._bm25

    @cached_property
    def chunk_doc(self) -> np.ndarray:
        """Each row's article, an index into `articles`."""
        if len(self.segments) == 1:
            return self.segments[0].chunk_doc
        first = np.cumsum([0] + [len(s.articles) for s in self.segments[:-1]])
        return np.concatenate([np.asarray(s.chunk_doc, dtype=np.int64) + f for s, f in zip(self.segments, first)])

    @cached_property
    def is_dead(self) -> np.ndarray:
        mask = np.zeros(self.n, dtype=bool)
        mask[self.dead] = True
        return mask

    def segment_of(self, rows: np.ndarray) -> np.ndarray:
        """The segment (position in `segments`) of each global row."""
        return np.searchsorted(self.starts, np.asarray(rows, dtype=np.int64), "right") - 1

    @cached_property
    def _stores(self) -> list:
        return [s.vector_store(self.dense) for s in self.segments]

    @property
    def vector_store(self):
        """The base segment's vector store (vectors.VectorStore): the only one of a Milvus index."""
        return self._stores[0]

    @property
    def vector_ids(self) -> np.ndarray:
        """The base segment's store id of each of its rows."""
        return self.segments[0].vector_ids

    def rows_of_ids(self, ids: np.ndarray) -> np.ndarray:
        """Rows of the base segment holding the given vector ids (-1 for a missing result stays -1)."""
        return self.segments[0].rows_of_ids(ids)

    def search_vectors(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Top-k (row, inner product) for one query vector (1 × dim) over every segment's store, deleted rows
        skipped, best first (ties by row). A store that scores approximately (8-bit codes) is asked for more
        candidates, and they are scored again from the segment's vectors: every score returned is exact."""
        from .vectors import APPROXIMATE_DEPTH

        found: list[tuple[int, float]] = []
        for s, vector_store in zip(self.segments, self._stores):
            if not s.n:
                continue
            approximate = getattr(vector_store, "approximate", False)
            depth = k * APPROXIMATE_DEPTH if approximate else k
            dead = self.dead[(self.dead >= s.start) & (self.dead < s.start + s.n)] - s.start
            if len(dead):
                scores, ids = vector_store.search(query, depth, exclude=s.vector_ids[dead])
            else:
                scores, ids = vector_store.search(query, depth)
            rows, scores = s.rows_of_ids(ids[0]), scores[0]
            if approximate:
                rows = np.sort(rows[rows >= 0])  # in order: read from the memory map front to back
                scores = np.asarray(s.vectors[rows]) @ np.asarray(query[0], dtype=np.float32)
            found += [(int(r) + s.start, float(x)) for r, x in zip(rows, scores) if r >= 0]
        return sorted(found, key=lambda rx: (-rx[1], rx[0]))[:k]

    @cached_property
    def vectors(self) -> np.ndarray:
        """Every row's vector (memory-mapped for one segment, a copy for several)."""
        if len(self.segments) == 1:
            return self.segments[0].vectors
        return np.concatenate([np.asarray(s.vectors) for s in self.segments])

    def vectors_of(self, rows) -> np.ndarray:
        """The vectors of the given global rows, read from their segments only."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(rows), self.dense.dim), dtype=np.float32)
        where = self.segment_of(rows)
        for i in np.unique(where).tolist():
            mine = np.flatnonzero(where == i)
            out[mine] = self.segments[i].vectors[rows[mine] - self.segments[i].start]
        return out

    def tokens_of(self, rows) -> list[np.ndarray]:
        """The token ids of the given global rows, read from their segments only."""
        rows = np.asarray(rows, dtype=np.int64)
        out: list[np.ndarray] = [np.zeros(0, np.int32)] * len(rows)
        where = self.segment_of(rows)
        for i in np.unique(where).tolist():
            mine = np.flatnonzero(where == i)
            flat, offsets = self.segments[i].tokens
            flat = np.asarray(flat)
            local = rows[mine] - self.segments[i].start
            for j, a, b in zip(mine.tolist(), np.asarray(offsets[local]).tolist(), np.asarray(offsets[local + 1]).tolist()):
                out[j] = flat[a:b]
        return out

    @cached_property
    def files_info(self) -> dict:
        """What the builds recorded about each source file (used by the next build only): the whole table of
        the newest segment that holds one (a base, or a segment of an index written before segments stored
        changes), then the records each later segment changed or removed."""
        whole = [i for i, s in enumerate(self.segments) if FILES in s.record.files]
        if not whole:
            raise IndexCorrupt(f"no segment of {self.dir} records its source files; {REBUILD}")
        info = json.loads((self.segments[whole[-1]].dir / FILES).read_text(encoding="utf-8"))
        for s in self.segments[whole[-1] + 1 :]:
            changes = json.loads((s.dir / FILES_CHANGED).read_text(encoding="utf-8"))
            for key in changes["removed"]:
                info.pop(key, None)
            info.update(changes["changed"])
        return info

    @cached_property
    def chunk_ids(self) -> list[str]:
        """Every row's chunk ID in row order, deleted rows included (decoded at once; `ids[row]` reads one)."""
        return self.ids.all()

    @cached_property
    def rows(self) -> dict[str, int]:
        """The live row of each chunk ID."""
        dead = self.is_dead
        return {cid: i for i, cid in enumerate(self.chunk_ids) if not dead[i]}

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(~self.is_dead)

    def texts_of(self, chunk_ids) -> dict[str, str]:
        return {cid: self.texts[self.rows[cid]] for cid in chunk_ids}

    def title(self, row: int) -> str:
        return self.articles[int(self.chunk_doc[row])]["display_title"]

    def doc_id(self, row: int) -> str:
        return self.articles[int(self.chunk_doc[row])]["doc_id"]

    def hit(self, row: int, rank: int, score: float) -> Hit:
        return Hit(
            rank=rank, chunk_id=self.ids[row], doc_id=self.doc_id(row), score=round(float(score), 6),
            text=self.texts[row], title=self.title(row),
        )


def load(index_dir: Path, attempts: int = 3) -> Index:
    """Open the generation the manifest names; retries if a concurrent build swapped it mid-open."""
    last: Exception | None = None
    for _ in range(attempts):
        manifest = read_manifest(index_dir)
        try:
            return Index(index_dir, manifest)
        except FileNotFoundError as e:
            last = e
            time.sleep(0.05)
            if read_manifest(index_dir).generation == manifest.generation:
                break
        except (ValueError, OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise IndexCorrupt(f"{index_dir} is damaged ({type(e).__name__}: {e}); {REBUILD}") from None
    raise IndexCorrupt(f"{index_dir} is missing data files ({last}); {REBUILD}")
