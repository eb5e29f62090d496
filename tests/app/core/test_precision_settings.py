"""PRECISION and the older ENCODER_QUANTIZE / MATCHER_QUANTIZE knobs: values, precedence, conflicts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.config import Settings


@pytest.fixture(autouse=True)
def _no_precision_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # tests/conftest.py pins PRECISION=fp32 for the suite; these tests decide it themselves.
    for name in ("PRECISION", "ENCODER_QUANTIZE", "MATCHER_QUANTIZE", "DEVICE"):
        monkeypatch.delenv(name, raising=False)


def make(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_default_is_auto_for_every_model() -> None:
    s = make()
    assert s.precision == "auto"
    assert (s.encoder_precision, s.matcher_precision) == ("auto", "auto")


def test_values_are_normalised_and_a_bad_one_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert make(precision=" BF16 ").precision == "bf16"
    with pytest.raises(ValidationError, match=r"PRECISION must be one of auto, bf16, fp32, int8; got 'fp16'"):
        make(precision="fp16")
    monkeypatch.setenv("PRECISION", "half")
    with pytest.raises(ValidationError, match="PRECISION must be one of"):
        make()


def test_int8_everywhere_or_per_model() -> None:
    s = make(precision="int8")
    assert (s.encoder_precision, s.matcher_precision) == ("int8", "int8")
    # The older knob chooses int8 for its model while PRECISION is left unset.
    s = make(encoder_quantize="int8")
    assert (s.encoder_precision, s.matcher_precision) == ("int8", "auto")
    s = make(matcher_quantize="int8")
    assert (s.encoder_precision, s.matcher_precision) == ("auto", "int8")
    s = make(precision="int8", encoder_quantize="int8", matcher_quantize="int8")  # agreeing: fine
    assert (s.encoder_precision, s.matcher_precision) == ("int8", "int8")
    s = make(precision="bf16", encoder_quantize="none")  # none = not quantised: agrees with bf16
    assert s.encoder_precision == "bf16"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"precision": "bf16", "encoder_quantize": "int8"}, "PRECISION=bf16 contradicts ENCODER_QUANTIZE=int8"),
        ({"precision": "auto", "matcher_quantize": "int8"}, "PRECISION=auto contradicts MATCHER_QUANTIZE=int8"),
        ({"precision": "int8", "matcher_quantize": "none"}, "PRECISION=int8 contradicts MATCHER_QUANTIZE=none"),
        ({"precision": "int8", "device": "cuda"}, "PRECISION=int8 runs on the CPU only, but DEVICE=cuda"),
        ({"encoder_quantize": "int8", "device": "cuda:1"}, "ENCODER_QUANTIZE=int8 runs on the CPU only"),
    ],
)
def test_contradictions_fail_at_start_up(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make(**values)


def test_contradictions_from_the_environment_fail_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRECISION", "fp32")
    monkeypatch.setenv("ENCODER_QUANTIZE", "int8")
    with pytest.raises(ValidationError, match="PRECISION=fp32 contradicts ENCODER_QUANTIZE=int8"):
        make()
