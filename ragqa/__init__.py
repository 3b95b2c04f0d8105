"""ragqa: local question answering over a folder of news articles, with verified citations.

    from ragqa import Engine

    with Engine(index_dir="index") as engine:
        answer = engine.ask("Why did the US allow H200 exports?")
"""

__version__ = "0.1.0"

__all__ = ["Engine", "Answer", "SearchResult", "Hit", "BuildReport", "__version__"]


def __getattr__(name: str):
    # Lazy: `ragqa --help` imports this package and must stay instant.
    if name == "Engine":
        from .engine import Engine

        return Engine
    if name in ("Answer", "SearchResult", "Hit"):
        from . import schema

        return getattr(schema, name)
    if name == "BuildReport":
        from .build import BuildReport

        return BuildReport
    raise AttributeError(f"module 'ragqa' has no attribute {name!r}")
