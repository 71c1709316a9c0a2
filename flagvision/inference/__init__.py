"""Answers from checkpoints: top-k and Grad-CAM with the card's own preprocessing (``predict``), one dropped
photo through every chosen model (``photos``), and export for use outside FlagVision (``export``).
"""
