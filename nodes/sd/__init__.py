"""Stable Diffusion implementation: families, loading, model management, text encoding, VAE, denoiser.

These modules import torch at the top; node declaration modules import them only inside `run`.
"""
