"""gpudoctor: will this GPU software stack run on this node, and run fast?"""

__version__ = "0.1.0"
