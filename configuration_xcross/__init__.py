"""The X-Cross configuration class."""

from .configuration_xcross import DEFAULT_PROMPT, PAPER_SCORING, POOLING_MODES, AdapterSpec, XCrossConfig

__all__ = ["DEFAULT_PROMPT", "PAPER_SCORING", "POOLING_MODES", "AdapterSpec", "XCrossConfig"]
