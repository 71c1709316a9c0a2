"""Data the library makes itself: vector flags (``flags``), the built-in dataset's photo-like scenes
(``scenes``), the built-in dataset in the workspace (``builtin``), and check images drawn by a second,
independent route (``checkset``) to measure what a model trained on the scenes really learned.
"""
