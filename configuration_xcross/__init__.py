"""The X-Cross configuration class."""

from .configuration_xcross import POOLING_MODES, AdapterSpec, XCrossConfig

__all__ = ["POOLING_MODES", "AdapterSpec", "XCrossConfig"]
