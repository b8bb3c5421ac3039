"""In a real browser, on the default txt2img workflow: typed links (refused with a hint, replaced, rerouted,
dropped into empty space to add a fitting node), selection, copy/paste across tabs, duplicate, collapse, rename,
groups and colours, widgets (scrub, arrows, typed entry clamped), and undo/redo of every kind of edit."""

from __future__ import annotations

from test_canvas_support import center, drag, graph, in_dot, node, open_canvas, out_dot, shot

pytest_plugins = ["test_canvas_support"]

CKPT, POSITIVE, NEGATIVE, LATENT, SAMPLER, DECODE, SAVE = "4", "6", "7", "5", "3", "8", "9"


def nodes(page) -> dict[str, dict]:
    return {n["id"]: n for n in graph(page)["nodes"]}


def empty_spot(page) -> tuple[float, float]:
    box = page.locator("#canvas").bounding_box()
    return box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.93


def test_incompatible_link_is_refused_with_a_hint_and_relinking_replaces(page):
    before = nodes(page)
    drag(page, out_dot(page, DECODE), in_dot(page, SAMPLER, "latent_image"))
    hint = page.locator(".hint")
    assert hint.is_visible()
    assert "IMAGE can't connect to latent_image (expects LATENT)" in hint.inner_text()
    assert nodes(page) == before  # nothing changed
    shot(page, "10-refused-link")

    # A second Empty Latent feeding latent_image replaces the first link: one link per input.
    node(page, LATENT).locator(".node-title").click()
    page.keyboard.press("Control+D")
    duplicate = next(i for i in nodes(page) if i not in before)
    drag(page, out_dot(page, duplicate), in_dot(page, SAMPLER, "latent_image"))
    after = nodes(page)
    assert after[SAMPLER]["links"]["latent_image"] == [duplicate, 0]
    assert page.locator(f'#links path.link[data-to="{SAMPLER}"][data-input="latent_image"]').count() == 1
    page.keyboard.press("Control+Z")
    assert nodes(page)[SAMPLER]["links"]["latent_image"] == [LATENT, 0]


def test_links_are_rerouted_by_dragging_from_an_input_and_removed_by_dropping_them_in_empty_space(page):
    drag(page, in_dot(page, SAMPLER, "positive"), in_dot(page, SAMPLER, "negative"))
    links = nodes(page)[SAMPLER]["links"]
    assert links["negative"] == [POSITIVE, 0] and "positive" not in links
    drag(page, in_dot(page, SAMPLER, "negative"), empty_spot(page))
    assert "negative" not in nodes(page)[SAMPLER]["links"]
    assert page.locator(".search").count() == 0  # a picked-up link let go is removed, no search
    page.keyboard.press("Control+Z")
    page.keyboard.press("Control+Z")
    links = nodes(page)[SAMPLER]["links"]
    assert links["positive"] == [POSITIVE, 0] and links["negative"] == [NEGATIVE, 0]


def test_a_link_dropped_in_empty_space_offers_only_nodes_that_take_its_type(page):
    object_info = page.evaluate("diffgraph.api.objectInfo()")
    drag(page, out_dot(page, DECODE), empty_spot(page))
    page.locator(".search-input").wait_for()
    assert page.locator(".search-filter .type-chip").inner_text() == "IMAGE"
    offered = page.locator(".search-item").evaluate_all("(items) => items.map((i) => i.dataset.type)")
    takes_image = {
        name for name, info in object_info.items()
        if any(spec[0] == "IMAGE" for section in ("required", "optional")
               for spec in info["input"].get(section, {}).values())
    }
    assert offered and set(offered) == takes_image
    shot(page, "11-link-search")
    page.keyboard.type("invert")
    page.keyboard.press("Enter")
    added = [n for n in graph(page)["nodes"] if n["type"] == "ImageInvert"]
    assert len(added) == 1 and added[0]["links"] == {"image": [DECODE, 0]}


def test_undo_and_redo_every_kind_of_edit(page):
    states = [graph(page)]

    def edited():
        states.append(graph(page))
        assert states[-1] != states[-2], "the edit changed nothing"

    title = node(page, SAVE).locator(".node-title")
    x, y = center(title)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 90, steps=6)
    page.mouse.up()
    edited()
    node(page, SAMPLER).locator('.widget-row[data-input="steps"] .w-arrow').last.click()
    edited()
    assert nodes(page)[SAMPLER]["values"]["steps"] == 21
    node(page, LATENT).locator(".node-title").dblclick()
    page.keyboard.press("Control+A")
    page.keyboard.type("Canvas size")
    page.keyboard.press("Enter")
    edited()
    assert node(page, LATENT).locator(".node-title").inner_text() == "Canvas size"
    node(page, CKPT).locator(".node-collapse").click()
    edited()
    node(page, NEGATIVE).locator(".node-title").click()
    page.keyboard.press("Delete")
    edited()
    assert NEGATIVE not in nodes(page)
    page.keyboard.press("Control+A")
    page.keyboard.press("Control+G")
    edited()
    assert len(graph(page)["groups"]) == 1

    for expected in reversed(states[:-1]):
        page.keyboard.press("Control+Z")
        assert graph(page) == expected
    assert node(page, NEGATIVE).count() == 1 and page.locator(".group").count() == 0
    for i, expected in enumerate(states[1:]):
        page.keyboard.press("Control+Shift+Z" if i % 2 else "Control+Y")
        assert graph(page) == expected
    assert node(page, CKPT).evaluate("(el) => el.classList.contains('collapsed')")


def test_box_select_copy_and_paste_into_another_tab_and_duplicate(page, context, canvas_server):
    # Shift+drag a box around the two prompt nodes only.
    first = node(page, POSITIVE).bounding_box()
    second = node(page, NEGATIVE).bounding_box()
    page.keyboard.down("Shift")
    drag(page, (first["x"] - 12, first["y"] - 12), (second["x"] + second["width"] - 40,
                                                     second["y"] + second["height"] - 10))
    page.keyboard.up("Shift")
    assert page.evaluate("[...diffgraph.editor.selection].sort()") == [POSITIVE, NEGATIVE]
    node(page, SAMPLER).locator(".node-title").click(modifiers=["Shift"])
    assert page.evaluate("diffgraph.editor.selection.size") == 3
    node(page, SAMPLER).locator(".node-title").click(modifiers=["Shift"])  # shift-click again: out
    page.keyboard.press("Control+C")

    other = open_canvas(context, canvas_server.url)  # a second tab of the same browser
    count = len(graph(other)["nodes"])
    other.mouse.move(*empty_spot(other))
    other.keyboard.press("Control+V")
    other.wait_for_function(f"diffgraph.editor.graph.nodes.size === {count + 2}")
    pasted = graph(other)["nodes"][count:]
    assert sorted(n["type"] for n in pasted) == ["CLIPEncode", "CLIPEncode"]
    assert {n["values"]["text"] for n in pasted} == {n["values"]["text"] for n in nodes(page).values()
                                                      if n["id"] in (POSITIVE, NEGATIVE)}
    assert all(n["links"] == {} for n in pasted)  # their clip came from outside the copy
    other.close()

    page.keyboard.press("Control+D")  # duplicate keeps the links coming in
    duplicated = graph(page)["nodes"][-2:]
    assert {tuple(n["links"]["clip"]) for n in duplicated} == {(CKPT, 1)}
    assert page.evaluate("diffgraph.editor.selection.size") == 2


def test_number_widgets_scrub_step_and_clamp_typed_values(page):
    steps = node(page, SAMPLER).locator('.widget-row[data-input="steps"] .w-number')
    x, y = center(steps.locator(".w-label"))
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 61, y, steps=8)  # 6 px per step
    page.mouse.up()
    assert nodes(page)[SAMPLER]["values"]["steps"] == 30
    steps.locator(".w-arrow").first.click()
    assert nodes(page)[SAMPLER]["values"]["steps"] == 29
    steps.locator(".w-label").click()
    page.keyboard.press("Control+A")
    page.keyboard.type("999999")
    page.keyboard.press("Enter")
    assert nodes(page)[SAMPLER]["values"]["steps"] == 10000  # the node's max
    cfg = node(page, SAMPLER).locator('.widget-row[data-input="cfg"] .w-label')
    cfg.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("7.257")
    page.keyboard.press("ArrowUp")  # one step (0.1) up while typing
    page.keyboard.press("Enter")
    assert nodes(page)[SAMPLER]["values"]["cfg"] == 7.36
    assert node(page, SAMPLER).locator('.widget-row[data-input="cfg"] .w-value').inner_text() == "7.36"
    node(page, SAMPLER).locator('select[aria-label="sampler_name"]').select_option("dpmpp_2m")
    assert nodes(page)[SAMPLER]["values"]["sampler_name"] == "dpmpp_2m"
    page.keyboard.press("Control+Z")
    assert nodes(page)[SAMPLER]["values"]["sampler_name"] == "euler"


def test_groups_colours_and_the_node_menu(page):
    node(page, SAMPLER).locator(".node-title").click(button="right")
    page.locator(".menu-item", has_text="Colour").hover()
    page.locator(".menu-item", has_text="Purple").click()
    assert nodes(page)[SAMPLER]["color"] == "purple"
    assert node(page, SAMPLER).evaluate("(el) => el.classList.contains('color-purple')")
    node(page, DECODE).locator(".node-title").click()
    node(page, SAVE).locator(".node-title").click(modifiers=["Shift"])
    page.keyboard.press("Control+G")
    group = graph(page)["groups"][0]
    page.locator(".group-title").click(button="right")
    page.locator(".menu-item", has_text="Colour").hover()
    page.locator(".menu-item", has_text="Green").click()
    assert graph(page)["groups"][0]["color"] == "green"
    # Dragging the group's title moves the nodes inside it.
    before = nodes(page)
    zoom = page.evaluate("diffgraph.editor.view.zoom")
    drag(page, page.locator(".group-title"), tuple(c + d for c, d in zip(center(page.locator(".group-title")),
                                                                          (100, 40), strict=True)))
    moved = nodes(page)
    for nid in (DECODE, SAVE):
        assert abs(moved[nid]["pos"][0] - before[nid]["pos"][0] - 100 / zoom) <= 1.5
    assert moved[SAMPLER]["pos"] == before[SAMPLER]["pos"]
    assert graph(page)["groups"][0]["bounds"][0] != group["bounds"][0]
    shot(page, "12-group-and-colour")
