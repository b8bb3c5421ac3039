"""Adapters that change what a checkpoint does: LoRA, ControlNet, IP-Adapter, and the safety checker.

Declaration modules (``*_nodes.py``) import no torch at module level; the implementation modules beside them
do the work. A LoRA or IP-Adapter is a *patch* on a MODEL/CLIP handle, applied for one sampling run and removed
after it (never a mutation of the shared modules); a ControlNet travels on the conditioning and adds its
residuals from a hook inside the denoiser.
"""
