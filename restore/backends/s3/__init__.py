"""The S3 object store (botocore): `store.S3Store`, configured by `settings`, with botocore's errors
converted in `errors` and large objects uploaded by `multipart`. See docs/s3.md."""
