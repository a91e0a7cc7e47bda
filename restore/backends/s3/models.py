"""botocore's model loader for caretaker's S3 clients: S3's models found without looking
through every AWS service's, and decoded into plain dicts."""

from __future__ import annotations

import gzip
import json
import os
from typing import Any

import botocore.loaders
import botocore.session


class _PlainJSON(botocore.loaders.JSONFileLoader):
    """botocore's model files decoded into plain dicts (ordered too), not OrderedDicts:
    about a third of the time, and the S3 model and the endpoint list are large."""

    def load_file(self, file_path: str) -> Any:
        for suffix, opener in ((".json", open), (".json.gz", gzip.open)):  # botocore's order
            if os.path.isfile(file_path + suffix):  # as botocore's: anything else is no model
                with opener(file_path + suffix, "rb") as stream:
                    return json.loads(stream.read())
        return None


class S3Models(botocore.loaders.Loader):
    """botocore's model loader, quick for S3. Its own looks through the model folder of
    every AWS service (over 400) to see that S3 is one, twice per client: with the decoding
    above, 0.05-0.07 s of every S3 process's start, init containers' included. Other
    services' models (STS, SSO: what web identity, assumed-role and SSO credentials ask
    the session for on first use) are loaded the usual way, listing and all."""

    def __init__(self, search_paths: list[str]) -> None:
        # Each its own list: a Loader keeps the one it is given, and extends it.
        super().__init__(
            extra_search_paths=[*search_paths], file_loader=_PlainJSON(), include_default_search_paths=False
        )
        self._others = botocore.loaders.Loader(
            extra_search_paths=[*search_paths],
            file_loader=self.file_loader,
            include_default_search_paths=False,
        )

    @classmethod
    def of(cls, session: botocore.session.Session) -> S3Models:
        """The loader for `session`, searching where botocore's own would: the folders of
        AWS_DATA_PATH (or the profile's data_path) first, then botocore's."""
        return cls(botocore.loaders.create_loader(session.get_config_variable("data_path")).search_paths)

    def list_available_services(self, type_name: str) -> list[str]:  # noqa: ARG002 (every type: S3)
        return ["s3"]

    def load_service_model(self, service_name: str, type_name: str, api_version: str | None = None) -> Any:
        if service_name == "s3":
            return super().load_service_model(service_name, type_name, api_version)
        return self._others.load_service_model(service_name, type_name, api_version)
