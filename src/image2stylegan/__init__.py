"""Image2StyleGAN++ in pure PyTorch: embed images into a style-based generator's W+ and noise spaces, then edit.

Data flows one way: weights -> generator -> losses -> optimizer stages -> applications -> CLI.
"""

__version__ = "0.1.0"
