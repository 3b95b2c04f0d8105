"""MilvusStore: the VectorStore seam over a Milvus collection (a server, or a Milvus Lite file), which also holds
BM25's document weights as sparse vectors.

Rows carry the generations they are visible in, [gen_from, gen_to): a build of generation G+1 inserts its new
rows with gen_from=G+1 and ends removed ones with gen_to=G+1, so readers of G keep seeing exactly G until the
manifest names G+1, and a build killed midway leaves only rows no reader sees (`cleanup` removes them).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from .errors import IndexCorrupt, RagqaError

ALIVE = 2**62  # gen_to of a row no build has ended
BATCH = 1000  # rows per write and ids per `in` list: ~1.5 MB of 384-d vectors, far below gRPC's 64 MB
MAX_K = 16384  # Milvus's largest topk (and query window)
PAD_TOKEN = 2**32 - 2  # Milvus refuses an empty sparse vector; a chunk without tokens gets this, which no query holds
FIELDS = {"id", "vector", "sparse", "gen_from", "gen_to"}
TOKEN_ENV = "RAGQA_MILVUS_TOKEN"
INSTALL = 'pip install "ragqa[milvus]"'
REBUILD = "rebuild it with `ragqa index`"
# Vector index: build and search parameters. FLAT is exact (the oracle of the others).
INDEXES = {
    "FLAT": ({}, lambda k: {}),
    "IVF_FLAT": ({"nlist": 1024}, lambda k: {"nprobe": 32}),
    "HNSW": ({"M": 16, "efConstruction": 200}, lambda k: {"ef": max(64, k)}),
}


class StoreUnavailable(RagqaError):
    """The vector store's server (or Milvus Lite file) cannot be used right now."""


def redact(text: str) -> str:
    """`text` with the credentials of any URI in it hidden: http://user:pass@host -> http://***@host."""
    return re.sub(r"(?<=://)[^/@\s]+@", "***@", text)


def public_uri(uri: str) -> str:
    """The URI a manifest records: credentials dropped (they come from RAGQA_MILVUS_TOKEN), a Milvus Lite path
    made absolute so the index opens from any folder."""
    if _is_lite(uri):
        return str(Path(uri).expanduser().resolve())
    return re.sub(r"(?<=://)[^/@\s]+@", "", uri)


def _is_lite(uri: str) -> bool:
    return "://" not in uri and uri.endswith(".db")


def _visible(generation: int) -> str:
    return f"gen_from <= {int(generation)} and gen_to > {int(generation)}"


def _ids_in(ids) -> str:
    return f"id in [{', '.join(str(int(i)) for i in ids)}]"


def _sparse(weights: dict | None) -> dict[int, float]:
    out = {int(t): float(w) for t, w in (weights or {}).items() if w}
    return out or {PAD_TOKEN: 1.0}


def _import_pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise StoreUnavailable(f"the Milvus store needs pymilvus, which is not installed: {INSTALL}") from None
    # pymilvus logs every failed RPC with its traceback on its own stderr handler (and Milvus Lite a failed
    # start): ragqa reports those failures itself, in one line.
    for name in ("pymilvus", "pymilvus.milvus_client", "milvus_lite"):
        logger = logging.getLogger(name)
        if logger.level < logging.CRITICAL:
            logger.setLevel(logging.CRITICAL)
    return pymilvus


def _rpc_errors() -> tuple:
    import grpc
    from pymilvus.exceptions import MilvusException

    return MilvusException, grpc.RpcError


def _reason(e: Exception) -> tuple[str, bool]:
    """(what went wrong, in a few words; whether the server was unreachable or silent rather than refusing)."""
    code = getattr(e, "code", None)
    if callable(code):  # a grpc.RpcError
        name = getattr(code(), "name", "")
        lost = {"DEADLINE_EXCEEDED": "no answer", "UNAVAILABLE": "connection refused or lost"}
        return lost.get(name, f"{name}: {e.details()}"[:200]), name in lost
    message = (str(getattr(e, "message", "") or e).splitlines() or [""])[0]
    if "Fail connecting to server" in message:
        return "no answer or connection refused", True
    if "Retry timeout" in message or "DEADLINE_EXCEEDED" in message or "UNAVAILABLE" in message:
        return "no answer", True
    return message[:200], False


def _lite_problem(path: Path, locked: bool = False) -> str:
    """Why a Milvus Lite database at `path` cannot be opened, as far as the file system tells; with `locked`,
    whether another process holds it (only after a failure: this process's own server holds it too)."""
    parent = path.parent
    if not parent.is_dir():
        return f"its folder {parent} does not exist"
    if not path.exists() and not os.access(parent, os.W_OK | os.X_OK):
        return f"its folder {parent} is not writable"
    if path.exists() and not path.is_dir():
        return "it is a file, not a Milvus Lite data folder (an older Milvus Lite format?)"
    if path.exists() and not os.access(path, os.W_OK | os.X_OK):
        return "it is not writable"
    lock = path / "LOCK"
    if locked and lock.exists():
        import fcntl

        with open(lock, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
            except OSError:
                return "another process has it open (Milvus Lite allows one process at a time; use a Milvus server to share it)"
    return ""


def _probe(uri: str, timeout: float) -> str:
    """Why a TCP connection to the server of `uri` fails, in a few words ('' if it connects)."""
    import socket
    from urllib.parse import urlparse

    try:
        parsed = urlparse(uri)
        port = parsed.port or (443 if parsed.scheme == "https" else 19530)
        with socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout):
            return "connected, but no Milvus answer"
    except ConnectionRefusedError:
        return "connection refused"
    except socket.gaierror:
        return "unknown host"
    except TimeoutError:
        return "no answer"
    except (OSError, ValueError) as e:
        return str(e)[:100]


def connect(uri: str, timeout: float = 10.0):
    """A MilvusClient for `uri` (a server URI, or a Milvus Lite file ending in .db), connected within `timeout`
    seconds; the token comes from RAGQA_MILVUS_TOKEN when set."""
    pymilvus = _import_pymilvus()
    shown = redact(uri)
    if _is_lite(uri):
        path = Path(uri).expanduser().resolve()
        try:
            import milvus_lite  # noqa: F401
        except ImportError:
            raise StoreUnavailable(f"a Milvus Lite file ({shown}) needs milvus-lite, which is not installed: {INSTALL}") from None
        problem = _lite_problem(path)
        if problem:
            raise StoreUnavailable(f"cannot open the Milvus Lite database {path}: {problem}; choose another --store")
        uri = str(path)
    else:
        if uri.lower().startswith("grpc://"):  # Milvus speaks gRPC on its http:// port; pymilvus knows no grpc://
            uri = "http://" + uri[len("grpc://"):]
        # pymilvus retries a refused connection until its timeout: a port nobody listens on fails in a moment
        # instead (unless gRPC goes through a proxy, which the direct probe would not see)
        if not any(os.environ.get(v) for v in ("grpc_proxy", "https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY")):
            early = _probe(uri, min(timeout, 2.0))
            if early in ("connection refused", "unknown host"):
                raise StoreUnavailable(f"cannot reach the Milvus server at {shown} ({early}): start it, or choose another --store")
    try:
        return pymilvus.MilvusClient(uri=uri, token=os.environ.get(TOKEN_ENV, ""), timeout=timeout)
    except _rpc_errors() as e:
        reason, lost = _reason(e)
    reason = redact(reason)
    if _is_lite(uri):
        reason = _lite_problem(Path(uri), locked=True) or reason
        raise StoreUnavailable(f"cannot open the Milvus Lite database {uri}: {reason}; choose another --store")
    if lost:
        reason = _probe(uri, min(timeout, 2.0)) or reason
        raise StoreUnavailable(
            f"cannot reach the Milvus server at {shown} within {timeout:g} s ({reason}): start it, or choose another --store"
        )
    if re.search(r"(?i)auth|token|credential|password|permission", reason):
        raise StoreUnavailable(f"the Milvus server at {shown} refused the credentials ({reason}): set {TOKEN_ENV}")
    raise StoreUnavailable(f"the Milvus server at {shown} refused the connection ({reason}); choose another --store")


def drop_collection(uri: str, name: str, prefix: str, timeout: float = 3.0) -> str | None:
    """Drop the collection `name` at `uri` if it is there and named with `prefix` (ragqa drops only collections
    it can prove one of its indexes made). None when done or nothing was left to drop, else what went wrong."""
    if not name.startswith(prefix) or (_is_lite(uri) and not Path(uri).exists()):
        return None  # not ragqa's to drop; or the Milvus Lite file is gone, and its collections with it
    try:
        client = connect(uri, timeout)
    except StoreUnavailable as e:
        return str(e)
    try:
        if client.has_collection(name, timeout=timeout):
            client.drop_collection(name, timeout=timeout)
        return None
    except _rpc_errors() as e:
        return redact(_reason(e)[0])
    finally:
        client.close()


class MilvusStore:
    """One Milvus collection per ragqa index: id, vector (inner product), sparse (BM25), gen_from, gen_to."""

    kind = "milvus"

    def __init__(self, client, uri: str, collection: str, dim: int, generation: int, *, index: str = "FLAT",
                 timeout: float = 10.0, meta: dict | None = None):
        self.client, self.uri, self.collection, self.dim = client, uri, collection, dim
        self.generation = int(generation)  # the generation this store reads, and writes (a build moves it)
        self.index, self.timeout = index, timeout
        self.meta = dict(meta or {})  # what the caller wants the manifest to keep beside (avgdl, tokenizer)

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(cls, uri: str, collection: str, dim: int, generation: int, *, create: bool = False,
             replace: bool = False, index: str = "FLAT", timeout: float = 10.0) -> MilvusStore:
        """Connect (within `timeout`), drop the collection first if `replace`, create it if missing and `create`,
        check its dimension, and load it for searching."""
        if index not in INDEXES:
            raise ValueError(f"unknown Milvus index {index!r}; choose one of {', '.join(INDEXES)}")
        client = connect(uri, timeout)
        store = cls(client, public_uri(uri), collection, dim, generation, index=index, timeout=timeout)
        try:
            exists = store._call("check the collection", "has_collection", collection)
            if exists and replace:
                store._call("drop the collection", "drop_collection", collection)
                exists = False
            if not exists:
                if not create:
                    raise IndexCorrupt(f"the Milvus collection {collection} is missing at {redact(uri)}; {REBUILD}")
                store._create()
            store._check()
            state = store._call("check the load state", "get_load_state", collection)
            if getattr(state.get("state"), "name", "") != "Loaded":
                store._call("load the collection", "load_collection", collection, slow=True)
        except BaseException:
            store.close()
            raise
        return store

    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("gen_from", DataType.INT64)
        schema.add_field("gen_to", DataType.INT64)
        indexes = self.client.prepare_index_params()
        indexes.add_index("vector", index_type=self.index, metric_type="IP", params=INDEXES[self.index][0])
        indexes.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        self._call("create the collection", "create_collection", self.collection, schema=schema,
                   index_params=indexes, consistency_level="Strong", slow=True)

    def _check(self) -> None:
        info = self._call("describe the collection", "describe_collection", self.collection)
        fields = {f["name"]: f for f in info.get("fields", [])}
        where = f"the Milvus collection {self.collection} at {redact(self.uri)}"
        if set(fields) != FIELDS:
            raise IndexCorrupt(f"{where} was not made by ragqa (fields {', '.join(sorted(fields))}); {REBUILD}")
        dim = int(fields["vector"].get("params", {}).get("dim", 0))
        if dim != self.dim:
            raise IndexCorrupt(f"{where} holds {dim}-d vectors, expected {self.dim}-d; {REBUILD}")
        vector_index = self._call("describe the index", "describe_index", self.collection, "vector")
        if vector_index and vector_index.get("index_type") in INDEXES:
            self.index = vector_index["index_type"]  # an existing collection keeps the index it was made with

    def _call(self, what: str, fn, *args, slow: bool = False, **kwargs):
        """fn(...) (a function, or the name of a MilvusClient method) bounded by the store's timeout (loading,
        creating, writing and flushing get at least a minute: at a million rows Milvus Lite took over 10 s to
        take a batch of 1,000 on a busy machine); a server error becomes StoreUnavailable."""
        if self.client is None:
            raise StoreUnavailable(f"the Milvus store {self.collection} at {redact(self.uri)} is closed")
        fn = getattr(self.client, fn) if isinstance(fn, str) else fn
        timeout = max(self.timeout, 60.0) if slow else self.timeout
        try:
            return fn(*args, timeout=timeout, **kwargs)
        except _rpc_errors() as e:
            reason, lost = _reason(e)
        if lost:
            raise StoreUnavailable(redact(
                f"{self._where()} did not {what} within {timeout:g} s ({reason}): check that it is running, "
                "or choose another --store"
            ))
        raise StoreUnavailable(redact(f"{self._where()} could not {what} ({reason})"))

    def _where(self) -> str:
        return f"the Milvus Lite database {self.uri}" if _is_lite(self.uri) else f"the Milvus server at {redact(self.uri)}"

    # ---------------------------------------------------------------- reading

    @property
    def ntotal(self) -> int:
        return self._count(_visible(self.generation))

    def _count(self, expr: str) -> int:
        rows = self._call("count rows", "query", self.collection, filter=expr, output_fields=["count(*)"],
                          consistency_level="Strong")
        return int(rows[0]["count(*)"]) if rows else 0

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of shape (len(queries), k), best first; missing results have id -1 and score -inf."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(0, int(k))
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        limit = min(k, MAX_K)
        params = {"metric_type": "IP", "params": INDEXES.get(self.index, INDEXES["FLAT"])[1](limit)}
        for start in range(0, len(queries) if limit else 0, BATCH):
            found = self._call("search", "search", self.collection, data=queries[start : start + BATCH],
                               anns_field="vector", limit=limit, filter=_visible(self.generation),
                               output_fields=["id"], search_params=params, consistency_level="Strong")
            for i, hits in enumerate(found, start):
                ids[i, : len(hits)] = [h["id"] for h in hits]
                scores[i, : len(hits)] = [h["distance"] for h in hits]
        return scores, ids

    def sparse_search(self, query: dict[int, float], k: int) -> list[tuple[int, float]]:
        """(id, score) best first by the inner product of `query` with the stored sparse vectors: with query
        {token: idf} and documents {token: tf/(tf+norm)} it is ragqa's BM25 score. Only rows sharing a token."""
        query = {int(t): float(w) for t, w in query.items() if w}
        if not query or k <= 0:
            return []
        found = self._call("search", "search", self.collection, data=[query], anns_field="sparse",
                           limit=min(int(k), MAX_K), filter=_visible(self.generation), output_fields=["id"],
                           search_params={"metric_type": "IP"}, consistency_level="Strong")
        return [(int(h["id"]), float(h["distance"])) for h in found[0]] if found else []

    # ---------------------------------------------------------------- writing

    def add(self, vectors: np.ndarray, ids: np.ndarray, sparse: list[dict[int, float]] | None = None) -> None:
        """Insert rows visible from self.generation on. An id already stored but visible to no earlier
        generation (what a killed build of this generation left) is replaced; one an earlier generation sees
        is refused: ragqa never reuses an id, and replacing it would change what readers of that generation see."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) != len(vectors) or (sparse is not None and len(sparse) != len(ids)):
            raise ValueError(f"{len(vectors)} vectors, {len(ids)} ids and {len(sparse or [])} sparse rows disagree")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("add() was given the same id twice")
        g = self.generation
        for start in range(0, len(ids), BATCH):
            batch = ids[start : start + BATCH].tolist()
            stored = self._fetch(batch, output_fields=["id", "gen_from"])
            if any(r["gen_from"] < g for r in stored):
                taken = sorted(r["id"] for r in stored if r["gen_from"] < g)[:5]
                raise ValueError(f"ids {taken} are already stored for generation < {g}; a new row needs a new id")
            rows = [
                {"id": i, "vector": vectors[start + j], "gen_from": g, "gen_to": ALIVE,
                 "sparse": _sparse(sparse[start + j] if sparse is not None else None)}
                for j, i in enumerate(batch)
            ]
            # a plain insert would keep both rows of a repeated id on a Milvus server (Lite overwrites)
            write = "upsert" if stored else "insert"
            self._call("write rows", write, self.collection, rows, slow=True)

    def remove(self, ids: np.ndarray) -> None:
        """End the rows at self.generation: readers of earlier generations keep them, later ones do not. A row
        this generation added is deleted outright (no generation ever saw it)."""
        g, ids = self.generation, np.unique(np.asarray(ids, dtype=np.int64))
        for start in range(0, len(ids), BATCH):
            batch = ids[start : start + BATCH].tolist()
            rows = self._fetch(batch, extra=f"gen_to > {g}")
            unseen = [r["id"] for r in rows if r["gen_from"] >= g]
            if unseen:
                self._call("delete rows", "delete", self.collection, ids=unseen, slow=True)
            self._end([r for r in rows if r["gen_from"] < g], g)

    def _fetch(self, ids: list[int], extra: str = "", output_fields=("id", "vector", "sparse", "gen_from", "gen_to")):
        if not ids:
            return []
        expr = _ids_in(ids) + (f" and {extra}" if extra else "")
        return self._call("read rows", "query", self.collection, filter=expr,
                          output_fields=list(output_fields), consistency_level="Strong")

    def _end(self, rows: list[dict], gen_to: int) -> None:
        """Rewrite whole rows with a new gen_to (Milvus's upsert replaces a row at one timestamp, so a reader
        sees either the old row or the new one)."""
        if rows:
            rows = [{**r, "gen_to": gen_to, "vector": np.asarray(r["vector"], dtype=np.float32)} for r in rows]
            self._call("update rows", "upsert", self.collection, rows, slow=True)

    def cleanup(self, current_generation: int, keep_previous: bool = True) -> int:
        """Delete rows no reader of `current_generation` (nor of the one before, if `keep_previous`) can see,
        and undo what a killed build of a later generation left: its rows (gen_from > current) are deleted and
        the rows it ended (current < gen_to < alive) live again. Returns the rows deleted."""
        cur = int(current_generation)
        deleted = self._delete_where(f"gen_from > {cur}")
        seen: set[int] = set()
        ended = f"gen_from <= {cur} and gen_to > {cur} and gen_to < {ALIVE}"
        while rows := self._call("read rows", "query", self.collection, filter=ended, limit=BATCH,
                                 output_fields=["id", "vector", "sparse", "gen_from", "gen_to"],
                                 consistency_level="Strong"):
            if seen.issuperset(r["id"] for r in rows):
                raise StoreUnavailable(f"{self._where()} did not apply an update of {self.collection}")
            seen.update(r["id"] for r in rows)
            self._end(rows, ALIVE)
        return deleted + self._delete_where(f"gen_to <= {cur - 1 if keep_previous else cur}")

    def _delete_where(self, expr: str) -> int:
        # Milvus reports how many rows a delete names, not how many it removed: count first
        n = self._count(expr)
        if n:
            self._call("delete rows", "delete", self.collection, filter=expr, slow=True)
        return n

    # ---------------------------------------------------------------- the manifest's side

    def params(self) -> dict:
        """What the manifest records to reopen the store; never a credential (those come from RAGQA_MILVUS_TOKEN)."""
        return {**self.meta, "uri": public_uri(self.uri), "collection": self.collection,
                "generation": self.generation, "index": self.index}

    def save(self, directory=None) -> None:
        """Flush the collection to the server's storage; nothing is written into `directory`. (Writes are
        durable and visible before this: Milvus keeps them in its log, and reads are strongly consistent.)"""
        from pymilvus.exceptions import ErrorCode, MilvusException

        def flush(collection, timeout):
            try:
                self.client.flush(collection, timeout=timeout, retry_on_rate_limit=False)
            except MilvusException as e:
                # Milvus rate-limits flushes (one per collection every few seconds by default); the rows are
                # already durable in its log, so a build right after another need not wait for it
                if e.code != ErrorCode.RATE_LIMIT:
                    raise

        self._call("flush", flush, self.collection, slow=True)

    @classmethod
    def load(cls, path: str, params: dict, n: int, dim: int, mmap: bool = True) -> MilvusStore:
        """Reopen the store a manifest names (`path` is unused) and check it shows n rows of `dim`."""
        try:
            uri, collection, generation = str(params["uri"]), str(params["collection"]), int(params["generation"])
        except (KeyError, ValueError):
            raise IndexCorrupt(f"the manifest's Milvus store parameters are incomplete; {REBUILD}") from None
        index = str(params.get("index", "FLAT"))
        store = cls.open(uri, collection, dim, generation, index=index if index in INDEXES else "FLAT")
        store.meta = {k: v for k, v in params.items() if k not in ("uri", "collection", "generation", "index")}
        found = store.ntotal
        if found != n:
            store.close()
            raise IndexCorrupt(
                f"the Milvus collection {collection} at {redact(uri)} shows {found} rows in generation "
                f"{generation}, expected {n}; {REBUILD}"
            )
        return store

    @staticmethod
    def reusable(params: dict, n: int) -> bool:
        """Always: a Milvus collection is updated in place, generation after generation."""
        return True

    def drop_others(self, prefix: str, keep: set[str]) -> list[str]:
        """Drop the collections named `prefix`… other than `keep` (an index's earlier collections, which no
        manifest names any more); returns their names."""
        names = [c for c in self._call("list collections", "list_collections")
                 if c.startswith(prefix) and c not in keep]
        for name in names:
            self._call("drop a stale collection", "drop_collection", name, slow=True)
        return names

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None
