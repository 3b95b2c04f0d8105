"""Vector stores: the VectorStore protocol and its FAISS implementation (the embedded default).

A store holds L2-normalized vectors under int64 ids and answers inner-product top-k searches. The index keeps
the id of each chunk row (`vector_ids.npy`), so a store never needs to know about rows, and an IVF store can be
updated in place across builds while rows shift.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import IndexCorrupt

REBUILD = "rebuild it with `ragqa index`"


class VectorStore(Protocol):
    kind: str

    @property
    def ntotal(self) -> int: ...

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of shape (len(queries), k), best first; missing results have id -1. (FaissStore also
        takes `exclude`: ids never to return.)"""

    def params(self) -> dict:
        """What the manifest records to reopen the store."""

    def save(self, directory: Path) -> None: ...

    def close(self) -> None: ...


# Exact search while it is cheap (a scan of 100k 384-d vectors takes ~10 ms, see ExactScan); above that an
# IVF index: on the benchmark corpora its recall@10 against exact search was higher than HNSW's at the same
# speed, it builds several times faster, and it can take new vectors and drop old ones without a rebuild.
# Its lists hold 8-bit codes of the vectors (a scalar quantizer), a quarter of the bytes to scan and to keep:
# at a million chunks, memory-mapped as a search opens it, 4.8 ms a query against 7.3 with the float vectors
# (1.9 against 3.7 read into memory), and 0.40 GB against 1.55. The candidates it finds are scored again from
# the float vectors (`APPROXIMATE_DEPTH`), so every score a search returns is exact; recall@10 against exact
# search 0.990, against 0.992 with the float lists.
FLAT_MAX = 100_000
APPROXIMATE_DEPTH = 2  # an approximate store is asked for this many times k candidates
FAISS_FILE = "faiss.index"


def ivf_params(n: int) -> tuple[int, int]:
    """(nlist, nprobe) for n vectors: ~4·sqrt(n) lists (each trained on >= 39 points, as FAISS wants),
    probing enough of them for recall@10 >= 0.95 on the benchmark corpora."""
    nlist = max(1, min(65536, int(4 * np.sqrt(n)), n // 39))
    return nlist, min(nlist, max(16, nlist // 64))


@contextmanager
def faiss_threads(n: int):
    """FAISS's OpenMP thread count for one call, restored afterwards (it is process-wide)."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _f32(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _i64(ids) -> np.ndarray:
    return np.ascontiguousarray(ids, dtype=np.int64)


class FaissStore:
    """FAISS in the index folder: exact inner product up to FLAT_MAX vectors, a trained IVF above."""

    def __init__(self, index, kind: str, trained_on: int = 0):
        self.index = index
        self.kind = kind
        self.trained_on = trained_on

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray) -> "FaissStore":
        """A new store over `vectors` with the given ids (building is batch work: every core is used)."""
        import faiss

        n, dim = vectors.shape
        vectors, ids = _f32(vectors), _i64(ids)
        with faiss_threads(os.cpu_count() or 1):
            if n <= FLAT_MAX:
                index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
                if n:
                    index.add_with_ids(vectors, ids)
                return cls(index, "flat")
            nlist, nprobe = ivf_params(n)
            index = faiss.IndexIVFScalarQuantizer(
                faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
            sample = np.random.default_rng(0).choice(n, size=min(n, nlist * 64), replace=False)
            index.train(vectors[np.sort(sample)])
            index.nprobe = nprobe
            index.add_with_ids(vectors, ids)
            return cls(index, "ivf", trained_on=n)

    @staticmethod
    def reusable(params: dict, n: int) -> bool:
        """Whether the store saved with `params` may be updated in place to hold `n` vectors: an IVF keeps its
        lists until the corpus has outgrown what they were trained on (4x); a flat index is rebuilt (cheap)."""
        return params.get("kind") == "ivf" and n > FLAT_MAX and 4 * int(params.get("trained_on", 0)) >= n

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if len(ids):
            with faiss_threads(os.cpu_count() or 1):
                self.index.add_with_ids(_f32(vectors), _i64(ids))
        self._tune()

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(_i64(ids))
        self._tune()

    def _tune(self) -> None:
        if self.kind == "ivf":
            self.index.nprobe = ivf_params(self.ntotal)[1]

    def search(self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        params = None
        if exclude is not None and len(exclude):  # deleted rows: filtered inside the scan, so k stay k
            batch = faiss.IDSelectorBatch(_i64(exclude))  # named: the selectors must outlive the search
            keep = faiss.IDSelectorNot(batch)
            if self.kind == "ivf":
                params = faiss.SearchParametersIVF(sel=keep, nprobe=int(self.index.nprobe))
            else:
                params = faiss.SearchParameters(sel=keep)
        # A query is a few milliseconds of work; OpenMP threads only add overhead, and when the cores are busy
        # (an LLM generating, another process) their spin-waits made a 100k-vector search 5x slower.
        with faiss_threads(1):
            return self.index.search(_f32(queries), max(1, min(k, self.ntotal)), params=params)

    @property
    def approximate(self) -> bool:
        """Whether its scores are those of 8-bit codes (an IVF built since the codes), not of the vectors."""
        import faiss

        return self.kind == "ivf" and not isinstance(self.index, faiss.IndexIVFFlat)

    def params(self) -> dict:
        if self.kind == "flat":
            return {"kind": "flat"}
        params = {"kind": "ivf", "nlist": int(self.index.nlist), "nprobe": int(self.index.nprobe), "trained_on": self.trained_on}
        return {**params, "codes": "sq8"} if self.approximate else params

    def save(self, directory: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(directory / FAISS_FILE))

    @classmethod
    def load(cls, path: str, params: dict, n: int, dim: int, mmap: bool = True) -> "FaissStore":
        """Open a saved store (memory-mapped where FAISS can) and check it holds n vectors of `dim`."""
        import faiss

        try:
            index = faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY) if mmap else None
        except RuntimeError:
            index = None
        if index is None:
            try:
                index = faiss.read_index(path)
            except RuntimeError as e:
                raise IndexCorrupt(f"FAISS index unreadable ({str(e).splitlines()[0][:120]}); {REBUILD}") from None
        if index.ntotal != n or index.d != dim:
            raise IndexCorrupt(f"FAISS index holds {index.ntotal}×{index.d} vectors, expected {n}×{dim}; {REBUILD}")
        store = cls(index, params.get("kind", "flat"), params.get("trained_on", 0))
        store._tune()
        return store

    def close(self) -> None:
        self.index = None


class ExactScan:
    """A flat FAISS store searched without FAISS: the exact inner products over the segment's own vectors.npy
    (the vectors the store holds, under the same ids). Importing FAISS was ~70 ms of a cold search; numpy's
    scan is as fast or faster (100k vectors: 10 ms against FAISS's 17 ms on one thread) and the top k the same
    (scores differ by float rounding, ~5e-7)."""

    kind = "flat"

    def __init__(self, vectors: np.ndarray, ids: np.ndarray):
        self.vectors, self.ids = vectors, ids

    @property
    def ntotal(self) -> int:
        return len(self.ids)

    def search(self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Like FAISS: (scores, ids), each queries × min(k, ntotal), best first; -1 ids where fewer remain."""
        if not self.ntotal:
            return np.full((len(queries), 1), -np.inf, np.float32), np.full((len(queries), 1), -1, np.int64)
        k = max(1, min(k, self.ntotal))
        scores = _f32(queries) @ np.asarray(self.vectors).T
        if exclude is not None and len(exclude):
            scores[:, np.isin(self.ids, exclude)] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable"), 1)
        best = np.take_along_axis(scores, top, 1)
        return best, np.where(np.isfinite(best), self.ids[top], -1)

    def close(self) -> None:
        self.vectors = None


def store_class(kind: str):
    """The VectorStore class of a manifest's store kind: FaissStore, or MilvusStore (ragqa.milvus)."""
    if kind == "milvus":
        from .milvus import MilvusStore

        return MilvusStore
    return FaissStore
