"""Mask nodes: exact values for each operation."""

from __future__ import annotations

import torch

from nodes.image.masks import GrowMask, ImageToMask, InvertMask, MaskComposite, MaskToImage, SolidMask


def test_solid_invert_and_composite_make_a_rectangle():
    (empty,) = SolidMask().run(None, 0.0, 8, 6)
    (block,) = SolidMask().run(None, 1.0, 3, 2)
    (mask,) = MaskComposite().run(None, empty, block, 4, 1, "add")
    assert mask.shape == (1, 6, 8)
    assert mask.sum().item() == 6
    assert mask[0, 1:3, 4:7].eq(1).all() and mask[0, 0].eq(0).all() and mask[0, :, :4].eq(0).all()
    (inverted,) = InvertMask().run(None, mask)
    assert torch.equal(inverted, 1 - mask)
    assert empty.eq(0).all()  # inputs are never modified


def test_composite_clips_at_the_border_and_operations():
    dest = torch.full((1, 4, 4), 0.5)
    src = torch.ones(1, 3, 3)
    (out,) = MaskComposite().run(None, dest, src, 2, 2, "multiply")
    assert out[0, 2:, 2:].eq(0.5).all() and out.sum().item() == 8.0
    (out,) = MaskComposite().run(None, torch.ones(1, 2, 2), torch.ones(1, 2, 2), 0, 0, "xor")
    assert out.eq(0).all()
    (out,) = MaskComposite().run(None, torch.zeros(1, 2, 2), torch.ones(1, 2, 2), 0, 0, "subtract")
    assert out.eq(0).all()


def test_image_mask_conversions():
    image = torch.rand(1, 5, 4, 3)
    (green,) = ImageToMask().run(None, image, "green")
    assert torch.equal(green, image[..., 1])
    (back,) = MaskToImage().run(None, green)
    assert back.shape == (1, 5, 4, 3) and torch.equal(back[..., 2], green)


def test_grow_and_shrink():
    mask = torch.zeros(1, 7, 7)
    mask[0, 3, 3] = 1
    (grown,) = GrowMask().run(None, mask, 1, "false")
    assert grown.sum().item() == 9
    (tapered,) = GrowMask().run(None, mask, 1, "true")
    assert tapered.sum().item() == 5
    (shrunk,) = GrowMask().run(None, grown, -1, "false")
    assert torch.equal(shrunk, mask)
