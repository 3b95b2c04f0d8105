"""ragqa: local question answering over a folder of news articles, with verified citations."""

__version__ = "0.1.0"
