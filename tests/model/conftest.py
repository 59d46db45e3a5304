"""Model-test fixtures (re-exported from model_helpers so the test modules can also import its helpers)."""

from model_helpers import build, build_reference, process_group  # noqa: F401
