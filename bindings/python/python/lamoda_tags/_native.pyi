"""Type stubs of the native module (Rust, PyO3); use the wrappers in ``lamoda_tags``."""

import os
from typing import Any

__version__: str

class LamodaError(Exception):
    """A failure of the Lamoda Tags runtime."""

class BundleError(LamodaError):
    """A model bundle or base model that cannot be loaded."""

def sku_shard(sku: str, n: int) -> int:
    """The shard (0..n) of ``sku``, as ``predict-tags --shard I/N`` splits a table:
    64-bit FNV-1a of its UTF-8 bytes, modulo ``n``. Raises ``ValueError`` for ``n < 1``."""

def find_checkout_bundle(start: str | os.PathLike[str]) -> str | None:
    """The first ``adapters/`` with a ``bundle.json`` in or above ``start``, or None."""

class NativeTagger:
    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        base_dir: str | os.PathLike[str] | None = None,
        num_threads: int | None = None,
        precision: str | None = None,
    ) -> None: ...
    @property
    def model_dir(self) -> str: ...
    @property
    def base_dir(self) -> str | None: ...
    @property
    def num_threads(self) -> int: ...
    @property
    def categories(self) -> list[str]: ...
    @property
    def bundle_info(self) -> dict[str, Any]: ...
    def check_many(
        self,
        items: list[tuple[str, list[str]]],
        threshold: float | None = None,
        max_tags: int | None = None,
        min_mentions: int = 0,
    ) -> list[str | None]: ...
    def predict_many(
        self,
        items: list[tuple[str, list[str]]],
        threshold: float | None = None,
        max_tags: int | None = None,
        min_mentions: int = 0,
        batch_size: int = 64,
    ) -> list[dict[str, Any]]: ...
