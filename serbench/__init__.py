"""serbench: benchmark and evaluate compressed speech-emotion-recognition models."""

__version__ = "0.1.0"
