"""segcore: instance-segmentation models (YOLACT; BlendMask and CenterMask to come), their
training, inference and evaluation. No Qt, never imports :mod:`annotator`.
"""

__version__ = "0.1.0"
