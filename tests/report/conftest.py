"""Fixtures for report tests: the session's headless Chromium (see browser.py)."""

from __future__ import annotations

from tests.report.browser import render as render
