"""The wireless substrate (DESIGN §5): channels, objectives, closed forms, baselines.

Batched PyTorch; float32/complex64 by default, float64 inside algorithms that need it.
"""
