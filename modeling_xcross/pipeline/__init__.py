"""Data, training and evaluation of X-Cross and per-domain LoRA recommenders on Amazon-style domain folders.

`xcross` (cli.py) is the entry point; the modules below are what it is made of, each usable on its own.
"""
