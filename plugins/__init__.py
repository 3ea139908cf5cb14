"""autobert's built-in techniques, one module each.

They are installed as ``autobert.plugins`` and registered through the
``autobert.techniques`` entry-point group, exactly like third-party techniques.
"""
