"""Logs carry no library message that reads like an error but is not (issue 13)."""

from __future__ import annotations

import logging
import subprocess
import sys

import tuneproof  # noqa: F401 - installs the filters


def test_bitsandbytes_optional_kernel_notice_is_dropped_and_other_warnings_kept(caplog):
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING, logger="bitsandbytes.backends.cpu.ops"):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you "
                       "already `pip install kernels`", "No module named 'kernels'")
        logger.warning("a real bitsandbytes problem")
    assert [r.getMessage() for r in caplog.records] == ["a real bitsandbytes problem"]


def test_renamed_transformers_property_warning_is_silenced():
    """In a fresh interpreter, as a stage runs (pytest installs warning filters of its own)."""
    code = ("import warnings, tuneproof; "
            "warnings.warn('`is_gradient_checkpointing` is deprecated and will be removed in v6.', FutureWarning); "
            "warnings.warn('something else is deprecated', FutureWarning)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "is_gradient_checkpointing" not in result.stderr and "something else is deprecated" in result.stderr
