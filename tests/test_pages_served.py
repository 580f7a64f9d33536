"""The API server serves the pages and their assets without a token, from its own origin."""

from __future__ import annotations

import re

import httpx
import pytest
from api_server import api

from chainsight.api import pages


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with api(tmp_path_factory.mktemp("data")) as (url, _, _app):
        yield url


@pytest.mark.parametrize("path", ["/", "/map", "/console"])
def test_pages_answer_html_without_a_token_and_load_only_local_assets(server, path):
    answer = httpx.get(server + path)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', answer.text)
    assert assets and all(a.startswith(("/", "data:")) and not a.startswith("//")
                          for a in assets), assets
    for asset in assets:
        if asset.startswith("/static/"):
            assert httpx.get(server + asset).status_code == 200, asset


def test_the_map_gets_its_basemap_and_maplibres_worker_from_the_server(server):
    land = httpx.get(f"{server}/static/land.geojson")
    assert land.status_code == 200 and land.json()["type"] in ("Feature", "FeatureCollection")
    assert httpx.get(f"{server}/static/maplibre-gl-worker.mjs").status_code == 200


def test_profiles_give_the_panel_its_temperature_ranges(server):
    profiles = httpx.get(f"{server}/pages/profiles.json").json()
    assert profiles["pharma_2_8"] == {"min_c": 2, "max_c": 8}
    assert profiles["frozen"] == {"min_c": -30, "max_c": -18}


def test_a_page_not_built_is_a_clear_503(server, monkeypatch, tmp_path):
    monkeypatch.setattr(pages, "STATIC", tmp_path)  # an empty build directory
    answer = httpx.get(f"{server}/map")
    assert answer.status_code == 503 and "not built" in answer.json()["error"]
