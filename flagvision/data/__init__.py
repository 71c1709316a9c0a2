"""Images in, tensors out: safe decoding of any user image (``images``), ImageFolder datasets decoded once
into cached uint8 tensors, split and augmented in batches (``dataset``), and the import of a user's folder
or zip of photos into the workspace (``importer``).
"""
