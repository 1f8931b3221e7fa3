"""tuneproof: fine-tune an open-weight LLM only when it provably beats the best prompted baseline."""

import logging
import warnings

__version__ = "0.1.0"

# Library messages that read like errors but are not, silenced once for every stage and tool:
# bitsandbytes looks for an optional CPU 4-bit kernel on the hub and falls back to its own (we use
# 4-bit only on CUDA), and TRL calls a transformers property that transformers renamed.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: "gemm_4bit_forward from kernels-community" not in record.getMessage())
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
