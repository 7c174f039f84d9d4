"""``render=png`` on the v1 predict endpoint and ``pointserve render``: a real server, real PNGs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from repo_builder import CLASSIFIER, PART_SEGMENTER

from pointserve.cli import main
from pointserve.render import PALETTE, part_colour, render_png
from pointserve.service import codecs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MUG = "examples/clouds/mug.ply"


def _pixels(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    assert png.startswith(PNG_SIGNATURE)
    return (imread(io.BytesIO(png), format="png")[..., :3] * 255).round().astype(int)


def _has_colour(pixels: np.ndarray, colour: str) -> bool:
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return bool((np.abs(pixels - rgb).max(axis=-1) <= 2).any())


def _predict(client, cloud, **params):
    return client.post(f"/v1/models/{PART_SEGMENTER}/predict", json={"points": cloud.tolist()}, params=params)


def test_render_png_draws_the_predicted_parts_in_their_colours(client, cloud):
    labels = _predict(client, cloud, category="mug").json()["labels"]
    response = _predict(client, cloud, category="mug", render="png")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    pixels = _pixels(response.content)
    assert pixels.shape == (600, 800, 3)
    for part in set(labels):
        assert _has_colour(pixels, part_colour(part)), part
    for part in {0, 1, 2, 3, 4, 5} - set(labels):  # a part not predicted is neither drawn nor in the legend
        assert not _has_colour(pixels, part_colour(part)), part
    again = _predict(client, cloud, category="mug", render="png")
    assert again.content == response.content  # deterministic


def test_render_png_from_the_body_and_an_upload(client, cloud):
    body = client.post(
        f"/v1/models/{PART_SEGMENTER}/predict", json={"points": cloud.tolist(), "category": "lamp", "render": "png"}
    )
    assert body.status_code == 200 and body.headers["content-type"] == "image/png"
    upload = client.post(
        f"/v1/models/{PART_SEGMENTER}/predict",
        files={"file": ("mug.ply", Path(MUG).read_bytes())},
        data={"category": "mug", "render": "png"},
    )
    assert upload.status_code == 200 and upload.content.startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("where", ["query", "body"])
@pytest.mark.parametrize("value", ["jpg", True])
def test_bad_render_values_get_one_message_from_query_and_body(client, cloud, where, value):
    text = "true" if value is True else value
    if where == "query":
        response = _predict(client, cloud, render=text)
    else:
        response = client.post(f"/v1/models/{PART_SEGMENTER}/predict", json={"points": cloud.tolist(), "render": value})
    assert response.status_code == 400
    shown = "true" if value is True else f"'{value}'"
    assert response.json()["error"] == f'render must be "png" (or absent for JSON), got {shown}'


def test_render_refuses_a_classifier_and_several_clouds(client, cloud):
    classified = client.post(f"/v1/models/{CLASSIFIER}/predict?render=png", json={"points": cloud.tolist()})
    assert classified.status_code == 400
    assert "is a classification model" in classified.json()["error"]
    two = client.post(
        f"/v1/models/{PART_SEGMENTER}/predict?render=png",
        json={"instances": [{"points": cloud.tolist()}, {"points": cloud.tolist()}]},
    )
    assert two.status_code == 400
    assert "draws one cloud; this request holds 2" in two.json()["error"]


def test_a_server_without_matplotlib_refuses_render_with_what_to_install(client, cloud, monkeypatch):
    monkeypatch.setattr(codecs, "matplotlib_available", lambda: False)
    response = _predict(client, cloud, render="png")
    assert response.status_code == 400
    assert (
        response.json()["error"]
        == "render=png needs matplotlib on the server (pip install matplotlib (or pointserve[train]))"
    )
    assert _predict(client, cloud, category="mug").status_code == 200  # JSON answers as ever


def test_the_openapi_document_lists_render(client):
    operation = client.get("/openapi.json").json()["paths"]["/v1/models/{model}/predict"]["post"]
    assert "render" in {p["name"] for p in operation["parameters"]}
    assert "image/png" in operation["responses"]["200"]["content"]


def test_render_png_colours_by_id_and_is_deterministic():
    rng = np.random.default_rng(0)
    points = rng.standard_normal((300, 3))
    labels = np.repeat([0, 3, 21], 100)
    png = render_png(points, labels, ["a", "b", "c", "d"], title="t")
    assert png == render_png(points, labels, ["a", "b", "c", "d"], title="t")
    pixels = _pixels(png)
    assert all(_has_colour(pixels, part_colour(i)) for i in (0, 3, 21))
    assert part_colour(21) == PALETTE[1]  # past the palette, ids wrap
    one = _pixels(render_png(points, None, title="classified"))
    assert _has_colour(one, PALETTE[0]) and not _has_colour(one, PALETTE[1])


def test_the_render_command_draws_a_server_answer(server, tmp_path, capsys):
    out = tmp_path / "mug.png"
    assert main(["render", MUG, "--url", server, "--model", PART_SEGMENTER, "--category", "mug", "-o", str(out)]) == 0
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    classified = tmp_path / "cls.png"
    assert main(["render", MUG, "--url", server, "--model", CLASSIFIER, "-o", str(classified)]) == 0
    assert _pixels(classified.read_bytes()).shape == (600, 800, 3)


def test_the_render_command_says_what_the_server_refused(server, tmp_path, capsys):
    code = main(
        ["render", MUG, "--url", server, "--model", PART_SEGMENTER, "-c", "chair", "-o", str(tmp_path / "x.png")]
    )
    assert code == 2
    assert "answered 400: unknown category 'chair'" in capsys.readouterr().err
    assert main(["render", MUG, "--url", "http://192.0.2.1:8000", "--model", "m", "-o", "x.png"]) == 2
    assert "not a loopback address" in capsys.readouterr().err


def test_parts_are_coloured_by_their_place_in_their_category():
    names = ["airplane/fuselage", "airplane/wing", "mug/body", "mug/handle", "plain"]
    assert [part_colour(i, names) for i in range(5)] == [PALETTE[0], PALETTE[1], PALETTE[0], PALETTE[1], PALETTE[4]]
    rng = np.random.default_rng(1)
    pixels = _pixels(render_png(rng.standard_normal((200, 3)), np.repeat([2, 3], 100), names, title="mug"))
    assert _has_colour(pixels, PALETTE[0]) and _has_colour(pixels, PALETTE[1]) and not _has_colour(pixels, PALETTE[2])
