"""Image nodes: load, save and preview pictures; scale, pad, invert, batch; Canny edges.

Declaration modules (load, save, transform) export NODES; files (numpy + Pillow) and ops (torch) hold the work.
"""
