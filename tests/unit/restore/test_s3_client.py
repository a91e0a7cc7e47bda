"""Making the S3 client: botocore's models are read for S3 alone (an init container's start)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import botocore.loaders
import pytest

from restore.backends.s3.settings import S3Settings
from restore.backends.s3.store import make_client


def test_the_client_is_made_without_looking_through_every_services_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listed: list[str] = []
    listdir = os.listdir

    def counted(path: str) -> list[str]:
        listed.append(path)
        return listdir(path)

    monkeypatch.setattr(botocore.loaders.os, "listdir", counted)
    environ = {
        "CARETAKER_S3_ENDPOINT": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
    }
    client = make_client(S3Settings.from_url(urlsplit("s3://bucket-1/prefix"), environ))
    assert client.meta.service_model.service_name == "s3"
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.can_paginate("list_objects_v2")
    assert len(listed) <= 4, listed  # botocore's own loader lists the folder of each of 400 services
