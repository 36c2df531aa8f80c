"""wmlab: learn world models from video and use them to act."""

__version__ = "0.1.0"
