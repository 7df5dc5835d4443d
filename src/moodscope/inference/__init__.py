"""Inference: a trained model (``checkpoint``) applied to files (``predictor``: find, decode,
window, features, network, one :class:`Prediction` per file) and written out (``outputs``).

Import the modules themselves; this package keeps no names of its own, so that importing
one part never pulls in the others.
"""
