"""The networks and what they need: the model registry's builders, the reference study's custom CNN and
VGG-16 transfer (``networks``), and VGG-16's ImageNet weights: status, download, import (``weights``).
"""
