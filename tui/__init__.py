"""Textual chat front end for localspec; the engine never imports this package."""
