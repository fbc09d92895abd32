"""Fixtures for the deployment tests (defined in deploy_helpers, a uniquely named module, so the
test files can import its helpers without colliding with tests/conftest.py)."""

from deploy_helpers import digit_pngs, digits, image_bundle, text_bundle, text_model  # noqa: F401
