"""tuneproof: fine-tune an open-weight LLM only when it provably beats the best prompted baseline."""

__version__ = "0.1.0"
