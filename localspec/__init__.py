"""localspec: speculative decoding for local llama.cpp models."""

__version__ = "0.1.0"
