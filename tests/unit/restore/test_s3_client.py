"""Making the S3 client: botocore's models are read for S3 alone (an init container's start)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import botocore.loaders
import botocore.session
import pytest

from restore.backends.s3.models import S3Models
from restore.backends.s3.settings import S3Settings
from restore.backends.s3.store import make_client

ENVIRON = {
    "CARETAKER_S3_ENDPOINT": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "k",
    "AWS_SECRET_ACCESS_KEY": "s",
}


@pytest.fixture
def listed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folders botocore's loaders list from now on."""
    found: list[str] = []
    listdir = os.listdir

    def counted(path: str) -> list[str]:
        found.append(path)
        return listdir(path)

    monkeypatch.setattr(botocore.loaders.os, "listdir", counted)
    return found


def test_the_client_is_made_without_looking_through_every_services_models(listed: list[str]) -> None:
    client = make_client(S3Settings.from_url(urlsplit("s3://bucket-1/prefix"), ENVIRON))
    assert client.meta.service_model.service_name == "s3"
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.can_paginate("list_objects_v2")
    assert len(listed) <= 4, listed  # botocore's own loader lists the folder of each of 400 services


def test_models_in_aws_data_path_come_first_as_with_botocores_own_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_DATA_PATH holds models of a user's own (a store's extensions, a newer API):
    botocore's loader searches its folders first, and so does caretaker's."""
    botocores = botocore.loaders.Loader()
    version = botocores.determine_latest_version("s3", "service-2")
    model = botocores.load_service_model("s3", "service-2", version)
    model["documentation"] = "the user's own S3 model"
    own = tmp_path / "models" / "s3" / version
    own.mkdir(parents=True)
    (own / "service-2.json").write_text(json.dumps(model))
    monkeypatch.setenv("AWS_DATA_PATH", f"{tmp_path / 'nothing here'}{os.pathsep}{tmp_path / 'models'}")
    client = make_client(S3Settings.from_url(urlsplit("s3://bucket-1/prefix"), ENVIRON))
    assert client.meta.service_model.documentation == "the user's own S3 model"


def test_the_sts_model_is_found_listing_no_more_than_botocores_own_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listed: list[str]
) -> None:
    """Web identity and assumed-role credentials load STS's model through the S3 client's
    session on first use; botocore's loader lists the folder of every service for it, once."""
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    botocore.loaders.create_loader(str(tmp_path)).load_service_model("sts", "service-2")
    botocores = len(listed)
    listed.clear()
    session = botocore.session.Session()
    session.register_component("data_loader", S3Models.of(session))
    session.get_component("data_loader").load_service_model("sts", "service-2")
    assert 0 < len(listed) <= botocores
