"""Lamoda Tags in Python: a product's customer reviews in, a short list of curated tags out.

    >>> from lamoda_tags import Tagger
    >>> tagger = Tagger.load("adapters")            # a model bundle; the base as recorded
    >>> answer = tagger.predict("Shoes", ["Лёгкие и удобные кроссовки"])
    >>> [(t["tag"], round(t["probability"], 2)) for t in answer["tags"]]
    [('Лёгкие', 1.0), ('Удобные', 0.97)]

The model runs in Rust (the same runtime as ``predict-tags`` and the HTTP API); every
call releases the GIL, and each :class:`Tagger` computes on a thread pool of its own
(``num_threads``), so several taggers (or Ray actors) on one machine share its cores
instead of each taking all of them. A loaded tagger pickles as its paths: Ray and
multiprocessing ship it and the receiving process loads the bundle again.

Errors: ``ValueError`` for a bad option or product (the message names it),
:class:`BundleError` (a :class:`LamodaError`) for a bundle or base that cannot be loaded,
:class:`LamodaError` for any other failure of the runtime.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ._native import (
    BundleError,
    LamodaError,
    NativeTagger,
    __version__,
    find_checkout_bundle,
    sku_shard,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow

#: The bundle when ``Tagger.load`` is given none, as for ``predict-tags``.
MODEL_ENV = "LAMODA_MODEL"
#: The base when ``Tagger.load`` is given none (else the bundle's recorded default).
BASE_ENV = "LAMODA_BASE"

__all__ = [
    "BundleError",
    "LamodaError",
    "Tagger",
    "__version__",
    "output_schema",
    "sku_shard",
]


def _check_item(name: str, good_type: Any, reviews: Any) -> str | None:
    """Why the item ``name`` (``"item 3"``) cannot be tagged (wrong types), or None."""
    if not isinstance(good_type, str):
        return f"{name}: good_type must be a str, not {type(good_type).__name__}"
    if isinstance(reviews, (str, bytes)) or not isinstance(reviews, Sequence):
        return (
            f"{name}: reviews must be a list of strings, not "
            f"{type(reviews).__name__}"
        )
    for j, review in enumerate(reviews):
        if not isinstance(review, str):
            return (
                f"{name}: reviews[{j}] must be a str, not {type(review).__name__}"
            )
    return None


def output_schema(with_error: bool = False) -> pyarrow.Schema:
    """The schema of :meth:`Tagger.predict_table`'s answer, which is also the schema of
    ``predict-tags --out tags.parquet``'s part files.

    ``sku``, ``good_type``, ``category`` (the adapter that answered), ``fallback`` (the good
    type has no route of its own), ``tags`` (most probable first, each with its
    ``probability``, ``mentions`` — how many reviews support it on their own — and up to
    3 ``evidence`` reviews), ``probabilities`` (every pool tag, in pool order),
    ``calibrated``. With ``with_error`` (``on_error="null"``) a last column ``error``
    holds why a row could not be tagged; that row's answer columns are then null.
    """
    import pyarrow as pa

    evidence = pa.struct(
        [
            pa.field("review", pa.int64(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("score", pa.float32(), nullable=False),
        ]
    )
    tag = pa.struct(
        [
            pa.field("tag", pa.string(), nullable=False),
            pa.field("probability", pa.float32(), nullable=False),
            pa.field("mentions", pa.int64(), nullable=False),
            pa.field("evidence", pa.list_(pa.field("item", evidence, nullable=False)), nullable=False),
        ]
    )
    probability = pa.struct(
        [
            pa.field("tag", pa.string(), nullable=False),
            pa.field("probability", pa.float32(), nullable=False),
        ]
    )
    # Without an error column every row is answered, so nothing is null; with it, a row
    # that could not be tagged has its answer columns null.
    nullable = with_error
    fields = [
        pa.field("sku", pa.string(), nullable=nullable),
        pa.field("good_type", pa.string(), nullable=nullable),
        pa.field("category", pa.string(), nullable=nullable),
        pa.field("fallback", pa.bool_(), nullable=nullable),
        pa.field("tags", pa.list_(pa.field("item", tag, nullable=False)), nullable=nullable),
        pa.field(
            "probabilities",
            pa.list_(pa.field("item", probability, nullable=False)),
            nullable=nullable,
        ),
        pa.field("calibrated", pa.bool_(), nullable=nullable),
    ]
    if with_error:
        fields.append(pa.field("error", pa.string(), nullable=True))
    return pa.schema(fields)


def _as_table(table: Any) -> pyarrow.Table:
    """A pyarrow.Table from a Table, RecordBatch, pandas or polars DataFrame (anything
    pyarrow reads through the Arrow PyCapsule interface)."""
    import pyarrow as pa

    if isinstance(table, pa.Table):
        return table
    if isinstance(table, pa.RecordBatch):
        return pa.Table.from_batches([table])
    try:
        import pandas as pd

        if isinstance(table, pd.DataFrame):
            return pa.Table.from_pandas(table, preserve_index=False)
    except ImportError:  # pragma: no cover - pandas is optional
        pass
    try:
        return pa.table(table)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"predict_table needs a pyarrow Table or RecordBatch, or a pandas or polars "
            f"DataFrame, not {type(table).__name__}: {err}"
        ) from None


class Tagger:
    """A model bundle loaded for tagging; see :meth:`Tagger.load`."""

    __slots__ = ("_native", "_args")

    def __init__(
        self, native: NativeTagger, args: tuple[str, str | None, int | None, str | None]
    ):
        self._native = native
        self._args = args

    @classmethod
    def load(
        cls,
        model_dir: str | os.PathLike[str] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        num_threads: int | None = None,
        precision: str | None = None,
    ) -> Tagger:
        """Loads a model bundle and its base, found as ``predict-tags`` finds them, with
        the same errors. The bundle: ``model_dir`` (``adapters/`` of a project, or one
        written by ``lamoda-tags bundle``), else ``$LAMODA_MODEL``, else the ``adapters/``
        of the project checkout above the current directory. The base: ``base_dir``,
        else ``$LAMODA_BASE``, else the directory the bundle records. The tagger computes
        on ``num_threads`` threads of its own (default: one per core), its encoder at
        ``precision``: ``"fp32"`` or ``"int8"`` (faster; see the README's *Speed*), default
        each adapter's ``runtime.json`` (fp32 in the shipped bundle).

        Raises :class:`BundleError` when the bundle or base cannot be found or loaded (the
        message says which file and how to get it), ``ValueError`` for ``num_threads=0``
        or an unknown ``precision``.
        """
        if num_threads is not None and (
            isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1
        ):
            raise ValueError(f"num_threads must be a whole number ≥ 1 or None, not {num_threads!r}")
        if model_dir is None:
            model_dir = os.environ.get(MODEL_ENV) or find_checkout_bundle(os.getcwd())
        if model_dir is None:
            raise BundleError(
                f"no model bundle: give model_dir or set {MODEL_ENV} (a project checkout has "
                f"one in adapters/; none is above {os.getcwd()})"
            )
        if base_dir is None:
            base_dir = os.environ.get(BASE_ENV) or None
        model = os.path.abspath(os.fspath(model_dir))
        base = None if base_dir is None else os.path.abspath(os.fspath(base_dir))
        native = NativeTagger(model, base, num_threads, precision)
        return cls(native, (model, base, num_threads, precision))

    def __reduce__(self):
        # Pickled as its paths: the receiving process loads the bundle again.
        return (Tagger.load, self._args)

    def __repr__(self) -> str:
        return (
            f"Tagger.load({self._args[0]!r}, base_dir={self._args[1]!r}, "
            f"num_threads={self._args[2]!r}, precision={self._args[3]!r})"
        )

    @property
    def model_dir(self) -> str:
        """The bundle's directory (absolute)."""
        return self._args[0]

    @property
    def base_dir(self) -> str | None:
        """The base's directory as given (absolute), or None for the bundle's default."""
        return self._args[1]

    @property
    def num_threads(self) -> int:
        """Threads of this tagger's pool."""
        return self._native.num_threads

    @property
    def categories(self) -> list[str]:
        """The categories the bundle has an adapter for (``accs``, ``bags``, …)."""
        return list(self._native.categories)

    @property
    def bundle_info(self) -> dict[str, Any]:
        """The bundle: ``format``, ``dir``, ``base`` (name, sha256, dir), ``categories``,
        ``routing`` (good type → category), ``fallback``, ``pools`` (category → its tags)
        and ``model`` (the names an answer gives)."""
        return self._native.bundle_info

    def predict(
        self,
        good_type: str,
        reviews: Sequence[str],
        threshold: float | None = None,
        max_tags: int | None = None,
        min_mentions: int = 0,
        sku: str | None = None,
    ) -> dict[str, Any]:
        """Tags one product: its Lamoda ``good_type`` (``Shoes``, ``Beauty_Accs``, …;
        others fall back) and its ``reviews``.

        The answer has the shape of the HTTP API's ``/v1/tags`` answer: ``sku``,
        ``good_type``, ``routed_to``, ``fallback``, ``tags`` (each ``tag``,
        ``probability``, ``mentions`` and ``evidence``: up to 3 ``{review, text, score}``),
        ``probabilities`` (every pool tag), ``reviews_read``, ``calibrated``, ``model``.

        ``threshold`` (0..1) replaces the saved thresholds, ``max_tags`` (1..6) caps the
        answer, ``min_mentions`` keeps only tags that many reviews support on their own.
        Raises ``ValueError`` for a bad option or a product without review text.
        """
        return self.predict_many(
            [{"sku": sku, "good_type": good_type, "reviews": reviews}],
            threshold=threshold,
            max_tags=max_tags,
            min_mentions=min_mentions,
        )[0]

    def predict_many(
        self,
        items: Iterable[Mapping[str, Any] | tuple[str, Sequence[str]]],
        threshold: float | None = None,
        max_tags: int | None = None,
        min_mentions: int = 0,
        batch_size: int = 64,
    ) -> list[dict[str, Any]]:
        """Tags many products, ``batch_size`` per encoder batch: each item a mapping with
        ``good_type``, ``reviews`` and optionally ``sku``, or a ``(good_type, reviews)``
        pair. The answers come in order, each as :meth:`predict` gives it, and equal to
        tagging the products one by one. The first bad item raises ``ValueError`` naming
        its index; see :meth:`predict_table` for a run that goes on.
        """
        answers, _ = self._predict(
            items, threshold, max_tags, min_mentions, batch_size, skip_errors=False
        )
        return answers  # type: ignore[return-value]

    def _predict(
        self,
        items: Iterable[Any],
        threshold: float | None,
        max_tags: int | None,
        min_mentions: int,
        batch_size: int,
        skip_errors: bool,
        label: str = "item",
        known: Mapping[int, str] | None = None,
    ) -> tuple[list[dict[str, Any] | None], list[str | None]]:
        """Answers and each item's error. Every item is checked before any is encoded;
        with ``skip_errors`` a bad item gets ``None`` and its error, else the first bad
        one raises ``ValueError``. ``known`` holds errors the caller found (by index).
        Messages name the item as ``f"{label} {index}"``."""

        def named(message: str) -> str:
            # The runtime names a product "request N".
            if message.startswith("request "):
                return f"{label} " + message[len("request ") :]
            return message

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number ≥ 1, not {batch_size!r}")
        skus: list[Any] = []
        pairs: list[tuple[str, list[str]]] = []
        errors: list[str | None] = []
        for index, item in enumerate(items):
            if isinstance(item, Mapping):
                sku, good_type, reviews = (
                    item.get("sku"),
                    item.get("good_type"),
                    item.get("reviews"),
                )
            elif isinstance(item, tuple) and len(item) == 2:
                sku, (good_type, reviews) = None, item
            else:
                raise ValueError(
                    f"{label} {index}: expected a mapping with good_type and reviews, or a "
                    f"(good_type, reviews) pair, not {type(item).__name__}"
                )
            why = (known or {}).get(index) or _check_item(f"{label} {index}", good_type, reviews)
            skus.append(sku)
            errors.append(why)
            # A bad item keeps its place as a product the runtime refuses (no review).
            pairs.append((good_type, list(reviews)) if why is None else ("", []))
        try:
            checked = self._native.check_many(
                pairs, threshold=threshold, max_tags=max_tags, min_mentions=min_mentions
            )
        except ValueError as err:
            raise ValueError(named(str(err))) from None
        errors = [mine or (None if theirs is None else named(theirs)) for mine, theirs in zip(errors, checked)]
        if not skip_errors:
            first = next((e for e in errors if e is not None), None)
            if first is not None:
                raise ValueError(first)
        good = [i for i, e in enumerate(errors) if e is None]
        native = self._native.predict_many(
            [pairs[i] for i in good],
            threshold=threshold,
            max_tags=max_tags,
            min_mentions=min_mentions,
            batch_size=batch_size,
        )
        answers: list[dict[str, Any] | None] = [None] * len(pairs)
        for i, answer in zip(good, native):
            answers[i] = {"sku": skus[i], **answer}
        return answers, errors

    def predict_table(
        self,
        table: Any,
        sku: str = "sku",
        good_type: str = "good_type",
        reviews: str = "reviews",
        on_error: Literal["raise", "null"] = "raise",
        threshold: float | None = None,
        max_tags: int | None = None,
        min_mentions: int = 0,
        batch_size: int = 64,
    ) -> pyarrow.Table:
        """Tags every row of ``table`` (a pyarrow Table or RecordBatch, or a pandas or
        polars DataFrame) and returns a pyarrow Table of one row per input row, in order,
        with the schema :func:`output_schema` documents (the ``sku`` column as strings).

        The columns named ``sku``, ``good_type`` and ``reviews`` (a list of strings) are
        read. With ``on_error="raise"`` (default) a bad row (a null field, no review text)
        raises ``ValueError`` naming the row; with ``on_error="null"`` it gets a row with
        ``error`` set and its answer columns null, and the rest are tagged.
        """
        import pyarrow as pa

        if on_error not in ("raise", "null"):
            raise ValueError(f'on_error must be "raise" or "null", not {on_error!r}')
        data = _as_table(table)
        missing = [c for c in (sku, good_type, reviews) if c not in data.column_names]
        if missing:
            raise ValueError(
                f"the table has no column {', '.join(map(repr, missing))} (its columns are "
                f"{', '.join(map(repr, data.column_names))}); name them with sku=, "
                f"good_type=, reviews="
            )
        skus = data.column(sku).to_pylist()
        skip = on_error == "null"
        items = [
            {"sku": s, "good_type": g, "reviews": r}
            for s, g, r in zip(
                skus, data.column(good_type).to_pylist(), data.column(reviews).to_pylist()
            )
        ]
        sku_errors = {row: f"row {row}: {sku!r} is null" for row, s in enumerate(skus) if s is None}
        answers, errors = self._predict(
            items,
            threshold,
            max_tags,
            min_mentions,
            batch_size,
            skip_errors=skip,
            label="row",
            known=sku_errors,
        )
        rows = []
        for row, (s, answer, error) in enumerate(zip(skus, answers, errors)):
            sku_text = None if s is None else str(s)
            if answer is None:
                given = items[row]["good_type"]
                rows.append(
                    {
                        "sku": sku_text,
                        "good_type": given if isinstance(given, str) else None,
                        "error": error,
                    }
                )
                continue
            out = {
                "sku": sku_text,
                "good_type": answer["good_type"],
                "category": answer["routed_to"],
                "fallback": answer["fallback"],
                "tags": answer["tags"],
                "probabilities": [
                    {"tag": t, "probability": p} for t, p in answer["probabilities"].items()
                ],
                "calibrated": answer["calibrated"],
            }
            if skip:
                out["error"] = None
            rows.append(out)
        return pa.Table.from_pylist(rows, schema=output_schema(with_error=skip))
