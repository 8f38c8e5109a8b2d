"""ChainSense: a trust layer for IoT data."""

__version__ = "0.1.0"
