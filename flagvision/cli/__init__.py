"""``python -m flagvision …``: the parser and the training, data and prediction commands (``main``), jobs
(``jobs``) and studies (``study``). A command imports only what it needs: ``--help``, ``jobs``, ``study list``
and ``weights status`` never import torch.
"""
