"""Rule types are registered from their classes: name and category once, checked at import."""

from __future__ import annotations

import pytest

from core.config.base import type_tag
from core.config.rules import MicroStopRule, ThresholdRule
from rules.types import DEFAULT_CATEGORY, REGISTRY, TYPE_TITLES, TYPES, _registry
from rules.types.base import BaseRule
from rules.types.threshold import Threshold


def test_the_registry_is_built_from_the_classes() -> None:
    built: dict[str, object] = {type_tag(cls.spec_model): cls for cls in TYPES}
    assert dict(REGISTRY) == built
    assert DEFAULT_CATEGORY["threshold"] == Threshold.category == "machine"
    assert TYPE_TITLES == {"micro_stop": "Micro-stop Issue"}


def test_a_type_without_a_category_is_refused_at_registration() -> None:
    class NoCategory(Threshold):
        spec_model = ThresholdRule

    with pytest.raises(TypeError, match="must declare spec_model and category"):
        _registry((*TYPES, NoCategory))


def test_a_configurable_type_without_a_class_is_refused() -> None:
    with pytest.raises(TypeError, match=r"without a class: \['threshold'\]"):
        _registry(tuple(cls for cls in TYPES if cls is not Threshold))


def test_a_name_registered_twice_is_refused() -> None:
    class Again(BaseRule):
        spec_model = MicroStopRule
        category = "x"

    with pytest.raises(TypeError, match="'micro_stop' registered twice"):
        _registry((*TYPES, Again))
