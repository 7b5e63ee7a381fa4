"""facsflow components: Ray-free building blocks over numpy and torch.

Importing this package has no side effects and never imports ``ray`` or ``workflows``.
"""

__version__ = "0.1.0"
