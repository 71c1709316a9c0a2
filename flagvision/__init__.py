"""FlagVision: train and compare image classifiers of European flags.

The library never imports Streamlit; the app (``streamlit_app.py``, ``pages/``, ``app_ui/``) is a thin
client over it, and so is the CLI (``python -m flagvision``).
"""

__version__ = "0.1.0"
