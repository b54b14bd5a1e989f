"""The composition root: the ``repsys`` command, the demo, and local server launchers.

The only package that imports all the others.
"""

__version__ = "0.1.0"
