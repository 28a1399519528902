"""Fixtures of the Python package's tests (run them with `cargo xtask python`, which
builds and installs the wheel, writes the tiny bundle and sets the variables read here)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _required(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests with `cargo xtask python`")
    return Path(value)


@pytest.fixture(scope="session")
def tiny() -> tuple[Path, Path]:
    """The test kit's tiny bundle (bags, shoes, accs as the fallback) and its base."""
    return _required("LAMODA_TEST_MODEL"), _required("LAMODA_TEST_BASE")


@pytest.fixture(scope="session")
def tiny_tagger(tiny):
    from lamoda_tags import Tagger

    model, base = tiny
    return Tagger.load(model, base, num_threads=2)


@pytest.fixture(scope="session")
def predict_tags() -> Path:
    """The built predict-tags binary."""
    return _required("LAMODA_PREDICT_TAGS")


@pytest.fixture(scope="session")
def real_bundle() -> tuple[Path, Path]:
    """The shipped bundle and the real base (fetched by `lamoda-tags fetch-base`); CI has
    them (LAMODA_REQUIRE_BASE), elsewhere the test is skipped without the base."""
    base = Path(os.environ.get("LAMODA_BASE", ROOT / "models" / "e5-small"))
    if not (base / "config.json").is_file():
        if os.environ.get("LAMODA_REQUIRE_BASE"):
            pytest.fail(f"LAMODA_REQUIRE_BASE is set but there is no base at {base}")
        pytest.skip(f"no base at {base} (run `cargo xtask fetch-base e5-small`)")
    return ROOT / "adapters", base


LETTERS = "abcdefghijklmnopqrstuvwxyz"


def letter_reviews(rnd: random.Random) -> list[str]:
    """1–3 reviews of letter words, what the tiny tokenizer reads."""
    return [
        " ".join(rnd.choice(LETTERS) * rnd.randint(1, 3) for _ in range(rnd.randint(2, 8)))
        for _ in range(rnd.randint(1, 3))
    ]


RUSSIAN = (
    "удобные лёгкие мягкие красивые качественные вместительная сумка кожа "
    "размер маломерят большемерят подошва ткань цвет запах стойкий крем "
    "тёплые носятся отлично хорошо плохо тонкий материал прочная ремень"
).split()

GOOD_TYPES = ["Shoes", "Bags", "Clothes", "Beauty_Accs", "Accs", "Home_Accs", "Toys"]


def russian_catalogue(n: int, seed: int = 1) -> dict[str, list]:
    """`n` products of Russian word reviews over every good type (columns sku, good_type,
    reviews), for the real bundle."""
    rnd = random.Random(seed)
    skus, good_types, reviews = [], [], []
    for i in range(n):
        skus.append(f"SKU{i:05d}")
        good_types.append(GOOD_TYPES[i % len(GOOD_TYPES)])
        reviews.append(
            [
                " ".join(rnd.choice(RUSSIAN) for _ in range(rnd.randint(3, 12)))
                for _ in range(rnd.randint(1, 4))
            ]
        )
    return {"sku": skus, "good_type": good_types, "reviews": reviews}
