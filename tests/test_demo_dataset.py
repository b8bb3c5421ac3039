"""The demo model's procedural data set and the analytic checker that scores generated images."""

from __future__ import annotations

import numpy as np
import pytest

from training import checker, dataset


def test_items_are_a_pure_function_of_seed_and_index():
    first = [dataset.render(dataset.sample_spec(5, i)) for i in range(20)]
    again = [dataset.render(dataset.sample_spec(5, i)) for i in range(20)]
    other = [dataset.render(dataset.sample_spec(6, i)) for i in range(20)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert sum(np.array_equal(a, b) for a, b in zip(first, other, strict=True)) == 0
    assert first[0].shape == (64, 64, 3) and first[0].dtype == np.uint8


def test_caption_wording():
    spec = dataset.Spec("circle", "red", "top left", "blue")
    assert dataset.caption(spec) == "a red circle at the top left on a blue background"
    assert dataset.caption(spec, with_position=False) == "a red circle on a blue background"
    assert dataset.caption(spec, with_background=False) == "a red circle at the top left"
    expected = "an orange square in the center on a gray background"
    assert dataset.full_caption("square", "orange", "center", "gray") == expected


def test_training_captions_sometimes_leave_out_position_and_background():
    specs = [dataset.sample_spec(1, i) for i in range(2000)]
    captions = [dataset.sample_caption(1, i, s) for i, s in enumerate(specs)]
    without_position = sum(" at the " not in c and " in the center" not in c for c in captions) / len(captions)
    without_background = sum("background" not in c for c in captions) / len(captions)
    assert 0.07 < without_position < 0.13
    assert 0.07 < without_background < 0.13
    assert all(c.split()[2] == s.shape and c.split()[1] == s.colour for c, s in zip(captions, specs, strict=True))


def test_held_out_triples_never_appear_in_training_and_every_value_is_still_seen():
    assert len(dataset.HELD_OUT) == round(0.1 * len(dataset.SHAPES) * len(dataset.COLOURS) * len(dataset.POSITIONS))
    assert not dataset.HELD_OUT & set(dataset.TRAIN_TRIPLES)
    for index, values in enumerate((dataset.SHAPES, dataset.COLOURS, dataset.POSITIONS)):
        assert {t[index] for t in dataset.TRAIN_TRIPLES} == set(values)
    drawn = {(s.shape, s.colour, s.position) for s in (dataset.sample_spec(3, i) for i in range(3000))}
    assert not drawn & dataset.HELD_OUT
    assert len(drawn) == len(dataset.TRAIN_TRIPLES)  # 3000 draws reach every training triple


def test_evaluation_prompts_are_the_held_out_triples_on_every_other_background():
    prompts = dataset.evaluation_prompts()
    assert {(s, c, p) for s, c, p, _ in prompts} == dataset.HELD_OUT
    assert all(bg != colour for _, colour, _, bg in prompts)
    assert len(prompts) == sum(len(dataset.backgrounds_for(c)) for _, c, _ in dataset.HELD_OUT)


def test_shapes_are_never_drawn_on_their_own_colour():
    specs = [dataset.sample_spec(9, i) for i in range(1000)]
    assert all(s.colour != s.background for s in specs)


@pytest.mark.parametrize("style", dataset.STYLES)
def test_checker_reads_every_attribute_of_rendered_images(style):
    for i in range(150):
        spec = dataset.sample_spec(11, i, style, held_out=i % 3 == 0)
        result = checker.analyse(dataset.render(spec))
        assert result.matches(spec.shape, spec.colour, spec.position, spec.background) == {
            "shape": True, "colour": True, "position": True, "background": True,
        }, (spec, result)
        assert result.style == style
        assert result.iou > 0.75


def test_checker_tells_apart_images_that_differ_in_one_attribute():
    rng = np.random.default_rng(0)
    base = dataset.make_spec(rng, ("triangle", "green", "bottom right"), "white")
    moved = dataset.make_spec(rng, ("triangle", "green", "top left"), "white")
    other_shape = dataset.make_spec(rng, ("circle", "green", "bottom right"), "white")
    assert checker.analyse(dataset.render(base)).position == "bottom right"
    assert checker.analyse(dataset.render(moved)).position == "top left"
    assert checker.analyse(dataset.render(other_shape)).shape == "circle"


def test_checker_on_an_empty_image_finds_no_shape():
    blank = np.full((64, 64, 3), 128, np.uint8)
    result = checker.analyse(blank)
    assert (result.shape, result.colour, result.position, result.background) == (None, None, None, "gray")
    assert not any(result.matches("circle", "red", "center", "white").values())


def test_checker_rejects_other_sizes():
    with pytest.raises(ValueError, match="64x64"):
        checker.analyse(np.zeros((32, 32, 3), np.uint8))


def test_canny_edges_outline_the_shape_only():
    spec = dataset.make_spec(np.random.default_rng(1), ("square", "red", "center"), "blue")
    edges = dataset.canny(dataset.render(spec))
    assert edges.shape == (64, 64, 3) and set(np.unique(edges)) == {0, 255}
    ys, xs = np.nonzero(edges[..., 0])
    inside = dataset.shape_mask(spec.shape, spec.cx, spec.cy, spec.half + 1.5) > 0
    assert inside[ys, xs].all()  # every edge pixel lies on (or just around) the square
    assert len(ys) > 40  # a full outline, not a few specks
