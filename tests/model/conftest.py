"""Model-test fixtures (re-exported from model_helpers so the test modules can also import its helpers)."""

from model_helpers import build, build_reference  # noqa: F401
